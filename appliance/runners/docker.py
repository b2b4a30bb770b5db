"""The docker backend: each job is one container from the service's own image.

The job's directory is bind-mounted read-write at ``/job`` (the working directory) and
each input file read-only at its staged path inside it. By default the container has no
network, no capabilities, cannot gain privileges, has a read-only root with a small
writable ``/tmp``, runs as a non-root user, and has memory, CPU and process limits (the
wall-time limit is enforced by the scheduler). A service loosens these only explicitly,
through its ``resources``. Containers carry labels (instance, job, service) so that they
can be found again after any restart. The only module that imports ``docker``.

When the appliance itself runs in a container, the Docker engine sees other paths than
we do: ``jobs_host_dir`` and ``uploads_host_dir`` say where our ``jobs_dir`` and
``uploads_dir`` are on the engine's host, and bind-mount sources are translated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
import requests.exceptions
from docker.types import Mount

from appliance.errors import RunnerError, RunnerUnavailableError
from appliance.jobdirs import read_exit_record, write_exit_record
from appliance.runners.base import JobSpec, RunState, RunStatus

if TYPE_CHECKING:
    from appliance.runnerconf import RunnerConfig
    from appliance.settings import Settings

log = logging.getLogger(__name__)

WORKDIR = "/job"
LABEL_INSTANCE = "appliance.instance"
LABEL_JOB = "appliance.job"
LABEL_SERVICE = "appliance.service"
RUNNING = {"running", "restarting", "paused", "removing"}
ENDED = {"exited", "dead"}
DEFAULT_USER = "1000:1000"
UNREACHABLE = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)


def parse_user(user: str) -> tuple[int, int] | None:
    uid, _, gid = user.partition(":")
    if uid.isdigit() and (gid.isdigit() or not gid):
        return int(uid), int(gid or uid)
    return None


class DockerBackend:
    def __init__(self, config: RunnerConfig, settings: Settings) -> None:
        options = config.options
        self.base_url = str(options.get("base_url") or os.environ.get("DOCKER_HOST") or
                            "unix:///var/run/docker.sock")  # fmt: skip
        self.stop_grace = float(options.get("stop_grace", 10))
        self.tmp_size = str(options.get("tmp_size", "64m"))
        # At most this many containers run at once (0: no limit); the others wait, created
        # but not started, and the engine keeps that queue across our restarts.
        self.slots = int(options.get("slots", 0))
        self._starting = threading.Lock()
        self.limits = config.limits
        self.instance = settings.instance
        self.jobs_dir = settings.jobs_dir
        self.paths = [
            (settings.jobs_dir, settings.jobs_host_dir or settings.jobs_dir),
            (settings.uploads_dir, settings.uploads_host_dir or settings.uploads_dir),
        ]
        self._client: docker.DockerClient | None = None

    # -- helpers -----------------------------------------------------------------------

    def _docker(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = docker.DockerClient(
                    base_url=self.base_url, version="auto", timeout=60
                )
            except docker.errors.DockerException as exc:
                raise RunnerUnavailableError(
                    f"the Docker engine at {self.base_url} is unreachable: {exc}"
                ) from None
        return self._client

    async def _call(self, what: str, function: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(function, *args)
        except UNREACHABLE as exc:
            self._client = None
            raise RunnerUnavailableError(
                f"the Docker engine is unreachable ({what}): {exc}"
            ) from None
        except docker.errors.APIError as exc:
            if (
                exc.status_code is not None
                and exc.status_code >= 500
                and "No such image" not in str(exc)
            ):
                raise RunnerUnavailableError(f"the Docker engine failed ({what}): {exc}") from None
            raise RunnerError(f"Docker refused {what}: {exc.explanation or exc}") from None
        except docker.errors.DockerException as exc:
            self._client = None
            raise RunnerUnavailableError(
                f"the Docker engine is unreachable ({what}): {exc}"
            ) from None

    def host_path(self, path: Path) -> str:
        """``path`` as the Docker engine's host sees it."""
        resolved = path.resolve()
        for ours, theirs in self.paths:
            if resolved.is_relative_to(ours.resolve()):
                return str(Path(theirs) / resolved.relative_to(ours.resolve()))
        return str(resolved)

    def container_name(self, job_id: str) -> str:
        return f"{self.instance}-{job_id}"

    def job_of(self, handle: str) -> str:
        return handle.removeprefix(f"{self.instance}-")

    # -- submit ------------------------------------------------------------------------

    def _create(self, spec: JobSpec) -> str:
        client = self._docker()
        name = self.container_name(spec.job_id)
        limits = spec.resources.over(self.limits)
        user = limits.user or DEFAULT_USER
        owner = parse_user(user)
        if owner is not None and os.geteuid() == 0:
            os.chown(spec.workdir, *owner)  # the job's user writes its outputs there
        mounts = [Mount(WORKDIR, self.host_path(spec.workdir), type="bind", read_only=False)]
        for staged in spec.inputs:
            target = spec.workdir / staged.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(exist_ok=True)  # the mount point, ours rather than the engine's
            mounts.append(Mount(f"{WORKDIR}/{staged.path}", self.host_path(staged.source),
                                type="bind", read_only=True))  # fmt: skip
        if not spec.image:
            raise RunnerError(f"service {spec.service_id} has no image to run")
        options: dict[str, Any] = {
            "name": name,
            "entrypoint": [spec.argv[0]],
            "command": list(spec.argv[1:]),
            "working_dir": WORKDIR,
            "environment": spec.env,
            "labels": {
                LABEL_INSTANCE: self.instance,
                LABEL_JOB: spec.job_id,
                LABEL_SERVICE: spec.service_id,
            },
            "mounts": mounts,
            "user": user,
            "network_mode": "bridge" if limits.network else "none",
            "cap_drop": ["ALL"],
            "cap_add": list(limits.capabilities or []) or None,
            "security_opt": ["no-new-privileges:true"],
            "read_only": limits.read_only_root is not False,
            "tmpfs": {"/tmp": f"rw,size={self.tmp_size},mode=1777"},
            "init": True,  # a real PID 1 passes SIGTERM on to the tool
            "detach": True,
        }
        if limits.memory:
            options["mem_limit"] = limits.memory
            options["memswap_limit"] = limits.memory
        if limits.cpus:
            options["nano_cpus"] = int(limits.cpus * 1e9)
        if limits.pids:
            options["pids_limit"] = limits.pids
        try:
            container = client.containers.create(spec.image, **options)
        except docker.errors.ImageNotFound:
            raise RunnerError(
                f"image {spec.image} is not available to the Docker engine: build or pull it"
            ) from None
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise
            # Submitted before: the same job, the same container (unless it is just gone).
            try:
                container = client.containers.get(name)
            except docker.errors.NotFound:
                container = client.containers.create(spec.image, **options)
        if container.status == "created":
            with self._starting:
                if self._free_slots(client) > 0:
                    container.start()
        return name

    def _free_slots(self, client: docker.DockerClient) -> int:
        if self.slots <= 0:
            return 1
        running = client.containers.list(
            filters={"label": f"{LABEL_INSTANCE}={self.instance}", "status": "running"}
        )
        return self.slots - len(running)

    def _start_waiting(self, client: docker.DockerClient, waiting: list[Any]) -> None:
        """Start created containers, oldest first, while slots are free."""
        with self._starting:
            free = self._free_slots(client)
            for container in sorted(waiting, key=lambda c: str(c.attrs.get("Created", "")))[:free]:
                with contextlib.suppress(docker.errors.NotFound):
                    container.start()

    async def submit(self, spec: JobSpec) -> str:
        return str(await self._call("create container", self._create, spec))

    # -- status ------------------------------------------------------------------------

    def _finish(self, container: Any) -> RunStatus:
        """Keep the logs and the exit code in the job directory, then remove the container."""
        container.reload()
        state = container.attrs["State"]
        code = int(state.get("ExitCode", -1))
        message = ""
        if state.get("OOMKilled"):
            message = "the job ran out of memory and was killed"
        elif state.get("Error"):
            message = str(state["Error"])
        workdir = self.jobs_dir / self.job_of(container.name)
        try:
            if workdir.is_dir():
                for stream in ("stdout", "stderr"):
                    with (workdir / stream).open("wb") as sink:
                        for chunk in container.logs(
                            stdout=stream == "stdout", stderr=stream == "stderr", stream=True
                        ):
                            sink.write(chunk)
                write_exit_record(workdir, code, message)
        except OSError as exc:  # a full or broken job volume: the job's end still counts
            message = f"{message}; its output could not be kept: {exc}".lstrip("; ")
            code = code or 1
        container.remove(force=True)
        return RunStatus(RunState.FINISHED, code, message)

    def _status(self, handles: Sequence[str]) -> dict[str, RunStatus]:
        client = self._docker()
        listed = client.containers.list(
            all=True, filters={"label": f"{LABEL_INSTANCE}={self.instance}"}
        )
        by_name = {c.name: c for c in listed}
        result: dict[str, RunStatus] = {}
        wanted = set(handles)
        waiting = [c for c in listed if c.status == "created" and c.name in wanted]
        if waiting:
            self._start_waiting(client, waiting)
        for handle in handles:
            container = by_name.get(handle)
            if container is None:
                record = read_exit_record(self.jobs_dir / self.job_of(handle))
                result[handle] = (
                    RunStatus(RunState.FINISHED, record[0], record[1]) if record
                    else RunStatus(RunState.LOST, message="its container is gone")
                )  # fmt: skip
            elif container.status in ENDED:
                result[handle] = self._finish(container)
            elif container.status in RUNNING:
                result[handle] = RunStatus(RunState.RUNNING)
            else:
                result[handle] = RunStatus(RunState.QUEUED)
        return result

    async def status(self, handles: Sequence[str]) -> dict[str, RunStatus]:
        if not handles:
            return {}
        result: dict[str, RunStatus] = await self._call("list containers", self._status, handles)
        return result

    # -- cancel and close ----------------------------------------------------------------

    def _stop(self, handle: str) -> None:
        try:
            container = self._docker().containers.get(handle)
        except docker.errors.NotFound:
            return
        if container.status == "created":  # waiting for a slot: it never ran
            workdir = self.jobs_dir / self.job_of(handle)
            with contextlib.suppress(OSError):
                if workdir.is_dir():
                    write_exit_record(workdir, 143, "cancelled before it started")
            container.remove(force=True)
            return
        try:
            container.stop(timeout=int(self.stop_grace))
        except docker.errors.NotFound:
            return

    async def cancel(self, handle: str) -> None:
        await self._call("stop container", self._stop, handle)

    def _orphans(self, active_jobs: set[str]) -> list[str]:
        client = self._docker()
        listed = client.containers.list(
            all=True, filters={"label": f"{LABEL_INSTANCE}={self.instance}"}
        )
        removed = []
        for container in listed:
            if container.labels.get(LABEL_JOB) not in active_jobs:
                container.remove(force=True)
                removed.append(container.name)
        return removed

    async def remove_orphans(self, active_jobs: set[str]) -> list[str]:
        """Remove this instance's containers whose jobs are over (or unknown)."""
        removed: list[str] = await self._call("remove orphans", self._orphans, active_jobs)
        return removed

    async def close(self) -> None:
        if self._client is not None:
            await asyncio.to_thread(self._client.close)
            self._client = None


def create(config: RunnerConfig, settings: Settings) -> DockerBackend:
    return DockerBackend(config, settings)
