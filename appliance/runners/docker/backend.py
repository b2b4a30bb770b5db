"""The docker backend: each step of a job is one container from the step's image.

The job's work directory is bind-mounted read-write at ``/job`` (the working directory)
and each input file read-only at its staged path inside it. By default the container has
no network, no capabilities, cannot gain privileges, has a read-only root with a small
writable ``/tmp``, runs as a non-root user, and has memory, CPU and process limits (the
wall-time limit is enforced by the scheduler). A service loosens these only explicitly,
through its ``resources``. Containers carry labels (instance, job, step, service) so that
they can be found again after any restart. The engine's API is spoken directly (engine.py).

When the appliance itself runs in a container, the Docker engine sees other paths than
we do: the runner option ``host_paths`` says where the jobs and uploads volumes are on
the engine's host, and bind-mount sources are given as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from appliance.errors import ConfigError, RunnerError, RunnerUnavailableError
from appliance.exits import read_exit_record, write_exit_record
from appliance.plan import JOBS, Location, PlanError
from appliance.runners.base import RunState, RunStatus, StepRun
from appliance.runners.docker import engineapi
from appliance.runners.docker.containers import (
    LABEL_INSTANCE,
    LABEL_JOB,
    LABEL_STDERR,
    LABEL_STDOUT,
    LABEL_STEP,
    LABEL_SUBMITTED,
    LABEL_WORK,
    container_name,
    container_options,
)
from appliance.runners.docker.engine import Engine, EngineError, NotFound, Unreachable
from appliance.runners.docker.events import CONTAINERS, IMAGES, EngineEvents
from appliance.runners.docker.identity import AccountsOfImages, add_named_user
from appliance.runners.docker.liveoutput import LiveOutput, Running
from appliance.runners.docker.waiting import Waiting, WaitingJobs, forget
from appliance.units import parse_size
from appliance.volumes import Volumes

if TYPE_CHECKING:
    from appliance.runners.config import RunnerConfig
    from appliance.settings import Settings

log = logging.getLogger(__name__)

RUNNING = {"running", "restarting", "paused", "removing"}
ENDED = {"exited", "dead"}


class DockerBackend:
    def __init__(self, config: RunnerConfig, settings: Settings) -> None:
        options = config.options
        self.base_url = str(options.get("base_url") or os.environ.get("DOCKER_HOST") or
                            "unix:///var/run/docker.sock")  # fmt: skip
        self.stop_grace = float(options.get("stop_grace", 10))
        self.tmp_size = str(options.get("tmp_size", "64m"))
        self.log_max = str(options.get("log_max", "64m"))
        # A running container's output, copied into its job's directory as it comes.
        self.live = LiveOutput(float(options.get("live_output", 2.0)),
                               parse_size(options.get("live_output_max", "1m")))  # fmt: skip
        self._host_cpus: int | None = None  # the engine's CPUs, asked once
        # At most this many containers run at once (0: no limit); the others wait without
        # a container, oldest submission first, and get theirs when a slot frees.
        self.slots = int(options.get("slots", 0))
        self._slots_lock = threading.Lock()
        self._starting: set[str] = set()  # containers being started (holding a slot)
        self._started: set[str] = set()  # every container started, until it is removed
        # Containers believed running, with when we started them: the slots in use are
        # counted from this (a list of the engine's containers per submission and per
        # death cost the engine more than the jobs did); each status round corrects it
        # from the engine's list, so a missed event costs a round's delay, no more.
        self._running: dict[str, float] = {}
        self._waiting = WaitingJobs()  # jobs without a container yet, waiting for a slot
        # Steps of jobs an adopting scheduler gave us, until their first status: one that
        # an earlier process left waiting for a slot is queued again from this plan.
        self._adopted: dict[str, StepRun] = {}
        self._starter = ThreadPoolExecutor(8, thread_name_prefix="docker-start")
        # The engine's event streams, each read by a thread: our containers; its images.
        ours = CONTAINERS | {"label": [f"{LABEL_INSTANCE}={settings.instance}"]}
        self.events = EngineEvents(self.base_url, ours, self._died_now)
        self.image_events = EngineEvents(self.base_url, IMAGES)
        self._removing: dict[str, RunStatus] = {}  # finished, container being removed
        self._died: set[str] = set()  # said dead by the engine (its list lags a moment)
        self._remover = ThreadPoolExecutor(2, thread_name_prefix="docker-remove")
        self.limits = config.limits
        self.instance = settings.instance
        # Why its jobs wait (appliance.waiting), said the same way each time.
        self._for_a_slot = RunStatus(RunState.QUEUED, reason="slot", message=(
            f"waiting for one of runner {config.id}'s {self.slots} slots"))  # fmt: skip
        self._being_started = RunStatus(RunState.QUEUED)  # a moment: not worth a write
        self.local = Volumes.local(settings)  # where this process reads and writes them
        self.engine = Volumes.from_option(options.get("host_paths"), self.local,
                                          "options.host_paths")  # fmt: skip
        try:
            self._engine = Engine(self.base_url, timeout=60)
        except ValueError as exc:
            raise ConfigError(str(exc), source=config.source, key="options.base_url") from None
        # A name and a home for the job's user where its image has none (identity.py).
        self._accounts = AccountsOfImages(self._engine) if options.get("name_user", True) else None

    # -- helpers -----------------------------------------------------------------------

    async def _call(self, what: str, function: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(function, *args)
        except Unreachable as exc:
            raise RunnerUnavailableError(
                f"the Docker engine is unreachable ({what}): {exc}"
            ) from None
        except EngineError as exc:
            if exc.status >= 500 and "no such image" not in exc.explanation.lower():
                raise RunnerUnavailableError(f"the Docker engine failed ({what}): {exc}") from None
            raise RunnerError(f"Docker refused {what}: {exc.explanation or exc}") from None

    def parse(self, handle: str) -> tuple[Path, int]:
        """The local work directory and the step of a run, from its handle alone
        (``<instance>-<job>[-<step>]``; the work location of a job is its id)."""
        rest = handle.removeprefix(f"{self.instance}-")
        job_id, _, step = rest.partition("-")
        try:
            workdir = self.local.path(Location(JOBS, job_id))
        except PlanError:
            workdir = self.local.path(Location(JOBS, "invalid-handle"))
        return workdir, int(step) if step.isdigit() else 0

    def _workdir_of(self, container: Any) -> tuple[Path, int]:
        labels = container.labels
        if LABEL_WORK not in labels:
            return self.parse(container.name)
        try:
            workdir = self.local.path(Location(JOBS, labels[LABEL_WORK]))
        except PlanError:
            return self.parse(container.name)
        return workdir, int(labels.get(LABEL_STEP) or 0)

    # -- submit ------------------------------------------------------------------------

    def _options(self, run: StepRun) -> dict[str, Any]:
        """The container of a step, always made from its plan and this runner's settings."""
        options = container_options(run, run.plan.resources.over(self.limits),
                                    instance=self.instance, tmp_size=self.tmp_size,
                                    log_max=self.log_max, local=self.local,
                                    engine=self.engine)  # fmt: skip
        if "nano_cpus" in options:  # the engine refuses more CPUs than it has: give it all
            if self._host_cpus is None:
                self._host_cpus = int(self._engine.info().get("NCPU") or 0) or None
            if self._host_cpus:
                options["nano_cpus"] = min(options["nano_cpus"], self._host_cpus * 10**9)
        return options

    def _create(self, run: StepRun) -> str:
        options = self._options(run)
        name = str(options["name"])
        if self.slots > 0:  # created when a slot is free, oldest submission first
            workdir = self.local.path(run.plan.work)
            with self._slots_lock:
                if name not in self._starting:
                    self._waiting.add(Waiting(name, workdir, run.submitted_at, options, run.step))
            self._fill_slots()
            return name
        container = self._create_container(options)
        if container.status == "created" and self._claim_start(name):
            self._start(container)
        return name

    def _create_container(self, options: dict[str, Any]) -> Any:
        """Create the container (or find it: created before, by us or an earlier run)."""
        return engineapi.create_or_get(
            self._engine, add_named_user(options, self._accounts, options["image"])
        )

    def _claim_start(self, name: str) -> bool:
        """True once per container: a list taken a moment ago may still show one as
        created that has run and exited since (starting it again reruns the job)."""
        with self._slots_lock:
            if name in self._started:
                return False
            self._started.add(name)
            return True

    def _start(self, container: Any) -> None:
        """Start a container claimed with ``_claim_start``. If the engine did not take the
        request (it went away, or refused), the claim is given back: the container stays
        created, and a later round starts it (else it would wait, QUEUED, for ever).

        But a start the engine took and failed (a 5xx: it was stopping, "transport is
        closing", or a containerd task of it outlived a restart, "task ... already
        exists"), or that it hung up on after it had the request, may have run the
        command: the engine's record can still say "created" with no start time, and
        starting it again ran a job twice (seen in CI). Such a job ends in ERROR, saying
        so, and is never started again."""
        try:
            try:
                container.start()
            except (EngineError, Unreachable) as exc:
                taken = exc.status >= 500 if isinstance(exc, EngineError) else exc.sent
                if not taken or isinstance(exc, NotFound):
                    raise
                why = exc.explanation if isinstance(exc, EngineError) else str(exc)
                raise RunnerError(
                    f"the Docker engine failed while starting container {container.name} "
                    f"({why}); its command may have run, so it is not started again"
                ) from None
        except NotFound:
            return
        except Exception:
            with self._slots_lock:
                self._started.discard(container.name)
            raise
        with self._slots_lock:
            if container.name not in self._died:  # it may have ended already
                self._running[container.name] = time.monotonic()

    def _fill_slots(self) -> None:
        """Create and start the oldest waiting jobs while slots are free (on a
        submission, when one of ours dies, and in each status round)."""
        with self._slots_lock:
            if not self._waiting:
                return
            busy = (set(self._running) - self._died) | self._starting
            ready = self._waiting.take(max(0, self.slots - len(busy)))
            self._starting.update(job.name for job in ready)
        for job in ready:
            self._starter.submit(self._launch, job)

    def _fill_slots_quietly(self) -> None:
        try:
            self._fill_slots()
        except Exception as exc:  # the next status round tries again
            log.debug("filling slots: %s", exc)

    def _launch(self, job: Waiting) -> None:
        """Create and start a job that waited for its slot; if that fails, the job ends
        (exit code 126 for a missing image, else 125 as ``docker run`` says) rather than
        waiting for ever."""
        try:
            if job.options is None:
                container = engineapi.get(self._engine, job.name)
            else:
                container = self._create_container(job.options)
            if container.status == "created" and self._claim_start(job.name):
                self._start(container)
        except Exception as exc:
            log.warning("could not start container %s: %s", job.name, exc)
            code = 126 if isinstance(exc, RunnerError) else 125
            with contextlib.suppress(OSError):
                if job.workdir.is_dir():
                    write_exit_record(job.workdir, code, f"the container could not start: {exc}",
                                      step=job.step)  # fmt: skip
            with contextlib.suppress(Exception):
                self._engine.remove(job.name)
        finally:
            forget(job.workdir, job.step)
            with self._slots_lock:
                self._starting.discard(job.name)

    async def submit(self, run: StepRun) -> str:
        return str(await self._call("create container", self._create, run))

    def adopt(self, run: StepRun) -> None:
        with self._slots_lock:
            self._adopted[container_name(self.instance, run)] = run

    # -- status ------------------------------------------------------------------------

    def _finish(self, container: Any) -> RunStatus:
        """Keep the logs and the exit code in the job directory, then remove the container."""
        code, oom, message = engineapi.exit_of(container, self.events.lost_at)
        workdir, step = self._workdir_of(container)
        labels = container.labels
        streams = {"stdout": labels.get(LABEL_STDOUT) or "stdout",
                   "stderr": labels.get(LABEL_STDERR) or "stderr"}  # fmt: skip
        self.live.finish(container.name)  # its live copy stops before the whole is written
        try:
            if workdir.is_dir():
                # never through what the job left there
                engineapi.keep_output(container, workdir, streams["stdout"], streams["stderr"])
                write_exit_record(workdir, code, message, step=step, oom=oom)
        except Unreachable:  # the engine went away (these are OSErrors too): ask again later
            raise
        except (OSError, PlanError) as exc:  # a full or broken job volume: the end still counts
            message = f"{message}; its output could not be kept: {exc}".lstrip("; ")
            code = code or 1
        # Removing takes the engine a while; the job's end is known already, so do not
        # keep the scheduler (and the next waiting container) waiting for it.
        self._removing[container.name] = RunStatus(RunState.FINISHED, code, message, oom)
        self._remover.submit(self._remove, container)
        return self._removing[container.name]

    def _remove(self, container: Any) -> None:
        try:
            container.remove()
        except NotFound:
            pass
        except Exception as exc:  # the orphan sweep removes it later
            log.warning("could not remove container %s: %s", container.name, exc)
        finally:
            self._removing.pop(container.name, None)
            with self._slots_lock:
                self._started.discard(container.name)
                self._died.discard(container.name)
                self._running.pop(container.name, None)

    def _list(self) -> tuple[dict[str, Any], float]:
        """This instance's containers by name, and when the list was asked for."""
        listed_at = time.monotonic()
        listed = engineapi.listed(self._engine, f"{LABEL_INSTANCE}={self.instance}")
        return {c.name: c for c in listed}, listed_at

    def _status(self, handles: Sequence[str]) -> dict[str, RunStatus]:
        by_name, listed_at = self._list()
        self._forget_gone(by_name, listed_at)
        running: list[Running] = []
        result = {handle: self._one(handle, by_name.get(handle), running) for handle in handles}
        # A job is gone only if a list taken after it was seen gone does not show it either:
        # its container may have been created and started since the first list was taken.
        if lost := [h for h, status in result.items() if status.state is RunState.LOST]:
            again = self._list()[0]
            result.update((h, self._one(h, again[h], running)) for h in lost if h in again)
        self.live.update(running)
        self._fill_slots()
        return result

    def _one(self, handle: str, container: Any, running: list[Running]) -> RunStatus:
        """One job's status from its container in the list (None: not listed)."""
        with self._slots_lock:
            adopted = self._adopted.pop(handle, None)
        if container is not None and container.status in RUNNING and handle in self._died:
            container.reload()  # the list lags the die event by a moment; inspect does not
        if handle in self._removing:
            return self._removing[handle]
        if container is None or container.status == "created":
            return self._not_started(handle, container, adopted)
        if container.status in ENDED:
            return self._finish(container)
        if container.status in RUNNING:
            labels, workdir = container.labels, self.parse(handle)[0]
            running.append(Running(container, workdir, labels.get(LABEL_STDOUT) or "stdout",
                                   labels.get(LABEL_STDERR) or "stderr"))  # fmt: skip
            return RunStatus(RunState.RUNNING)
        return RunStatus(RunState.QUEUED)

    def _forget_gone(self, listed: dict[str, Any], listed_at: float) -> None:
        """Forget started and dead containers the engine no longer lists: these sets
        only guard containers that exist, so they never grow beyond the engine's list.
        The running ones are set from the list taken at ``listed_at``, keeping those
        started since (the list could not show them)."""
        with self._slots_lock:
            keep = set(listed) | self._starting | set(self._removing)
            self._started &= keep
            self._died &= keep
            running = {name: listed_at for name, c in listed.items() if c.status in RUNNING}
            running.update((name, at) for name, at in self._running.items()
                           if at >= listed_at or name in running)  # fmt: skip
            self._running = running
        self.live.forget_except(set(listed))

    def _not_started(self, handle: str, container: Any, adopted: StepRun | None) -> RunStatus:
        """A job without a running container: waiting for a slot, being started, or gone."""
        workdir, step = self.parse(handle)
        # Queued by an earlier run of ours? Its container is made anew from its plan.
        remade = self._options(adopted) if adopted is not None and container is None else None
        with self._slots_lock:
            if handle in self._starting:  # the most asked, in a batch: answered first
                return self._being_started
            if handle in self._waiting:
                return self._for_a_slot
            if remade is not None and self._waiting.recover(
                handle, workdir, step, remade, adopted.submitted_at if adopted else 0.0
            ):
                return self._for_a_slot
            if container is not None and self.slots > 0:  # created, but nobody started it
                submitted = container.labels.get(LABEL_SUBMITTED) or 0
                self._waiting.add(Waiting(handle, workdir, float(submitted), None, step))
                return self._for_a_slot
            if container is not None:  # no slot limit: start it now
                self._starting.add(handle)
        if container is not None:
            self._starter.submit(self._launch, Waiting(handle, workdir, 0.0, None, step))
            return self._being_started
        record = read_exit_record(workdir, step)
        if record:
            return RunStatus(RunState.FINISHED, record.code, record.message, record.oom)
        return RunStatus(RunState.LOST, message="its container is gone")

    async def status(self, handles: Sequence[str]) -> dict[str, RunStatus]:
        if not handles:
            return {}
        result: dict[str, RunStatus] = await self._call("list containers", self._status, handles)
        return result

    # -- change notices ------------------------------------------------------------------

    def _died_now(self, name: str) -> None:
        """The event stream saw one of our containers die."""
        with self._slots_lock:
            self._died.add(name)
        if self.slots > 0:  # a slot is free: fill it now
            self._starter.submit(self._fill_slots_quietly)

    async def changed(self, timeout: float) -> None:
        """Return when one of our containers started or died (or after ``timeout``)."""
        await self.events.changed(timeout)

    async def images_changed(self, timeout: float) -> None:
        """Return when an image was tagged, pulled, loaded or deleted (or after ``timeout``)."""
        await self.image_events.changed(timeout)

    # -- cancel and close ----------------------------------------------------------------

    def _stop(self, handle: str) -> None:
        workdir, step = self.parse(handle)
        with self._slots_lock:  # its end recorded before a status round can miss it
            if self._waiting.drop(handle, workdir, step):  # it never ran
                with contextlib.suppress(OSError):
                    if workdir.is_dir():
                        write_exit_record(workdir, 143, "cancelled before it started", step=step)
        try:
            container = engineapi.get(self._engine, handle)
        except NotFound:
            return
        if container.status == "created":  # made but never started: it never ran
            with contextlib.suppress(OSError):
                if workdir.is_dir():
                    write_exit_record(workdir, 143, "cancelled before it started", step=step)
            container.remove()
            return
        try:
            container.stop(int(self.stop_grace))
        except NotFound:
            return

    async def cancel(self, handle: str) -> None:
        await self._call("stop container", self._stop, handle)

    def _orphans(self, active_jobs: set[str]) -> list[str]:
        removed = []
        for container in self._list()[0].values():
            if container.labels.get(LABEL_JOB) in active_jobs or container.name in self._removing:
                continue
            try:
                container.remove()
            except NotFound:
                continue
            except EngineError as exc:  # e.g. its removal is under way already
                log.warning("could not remove container %s: %s", container.name, exc)
                continue
            removed.append(container.name)
        return removed

    async def remove_orphans(self, active_jobs: set[str]) -> list[str]:
        """Remove this instance's containers whose jobs are over (or unknown)."""
        removed: list[str] = await self._call("remove orphans", self._orphans, active_jobs)
        return removed

    # -- checks ------------------------------------------------------------------------

    def _probe(self) -> str:
        version = self._engine.version()
        return f"Docker engine {version.get('Version', '?')} (API {version.get('ApiVersion', '?')})"

    async def probe(self) -> str:
        """The engine's version; RunnerUnavailableError if it does not answer."""
        return str(await self._call("ask the engine's version", self._probe))

    def _missing(self, images: Sequence[str]) -> list[str]:
        return [image for image in images if not self._engine.has_image(image)]

    async def missing_images(self, images: Sequence[str]) -> list[str]:
        missing: list[str] = await self._call("look for images", self._missing, images)
        return missing

    async def image_id(self, image: str) -> str | None:
        return cast(str | None, await self._call("inspect an image", self._engine.image_id, image))

    async def close(self) -> None:
        self.events.close()
        self.image_events.close()
        await asyncio.to_thread(self._starter.shutdown, wait=True)
        await asyncio.to_thread(self._remover.shutdown, wait=True)
        await asyncio.to_thread(self.live.close)
        await asyncio.to_thread(self._engine.close)


def create(config: RunnerConfig, settings: Settings) -> DockerBackend:
    return DockerBackend(config, settings)
