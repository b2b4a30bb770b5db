"""The kubernetes backend: each step of a job is one batch/v1 Job in one namespace.

The scheduler sees the jobs and uploads volumes as files (its own mounts of the same
claims in a cluster; the same folders in the tests' single-node cluster), prepares each
step there (mount points, fresh stdout and stderr, owned by the job's user) and creates
the Job (``manifests``). Two watches, on this instance's Jobs and on their pods
(``informer``), keep a local copy of both, so a status round asks the apiserver nothing
and every change wakes the scheduler at once. A step's end is written to its exit record
as soon as it is seen, so it outlives the Job (removed after ``finished_ttl``).

Restarts: a Job's name is made from the instance and the job id, so a repeated submit
finds the Job already there (409) and takes it; a new scheduler lists the Jobs and
follows the ones its active jobs name. Jobs of no active job are removed as orphans.
Cancel deletes the Job with its pod (SIGTERM, then SIGKILL after ``stop_grace``).

The client is lightkube (asyncio, typed models matching the cluster's version, a small
dependency tree): the apiserver is reached with the pod's service account in a cluster,
or a kubeconfig (option, KUBECONFIG, ~/.kube/config) outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.codecs import from_dict
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import ConfigMap, Node, Pod
from lightkube.types import CascadeType

from appliance.errors import ConfigError, RunnerError, RunnerUnavailableError
from appliance.exits import ExitRecord, read_exit_records, write_exit_record
from appliance.offloop import FileWork
from appliance.plan import JOBS, Location, PlanError
from appliance.runners.base import RunState, RunStatus, StepRun
from appliance.runners.kubernetes.ends import NEVER_RAN, step_status
from appliance.runners.kubernetes.informer import Informer
from appliance.runners.kubernetes.manifests import (
    DEFAULT_USER,
    JOB_NAME_LABEL,
    LABEL_INSTANCE,
    LABEL_JOB,
    PodOptions,
    dns_label,
    job_manifest,
    parse_user,
)
from appliance.safefs import fresh_file, is_plain, make_dirs
from appliance.volumes import Volumes

if TYPE_CHECKING:
    from appliance.runners.config import RunnerConfig
    from appliance.settings import Settings

log = logging.getLogger(__name__)

JUST_MADE_SECONDS = 60.0  # a Job this process made may not have reached its watch yet
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def kube_config(path: str | None) -> KubeConfig:
    try:
        if path:
            return KubeConfig.from_file(path)
        return KubeConfig.from_env()
    except Exception as exc:  # lightkube raises several kinds for a missing or bad file
        raise ConfigError(
            f"no usable Kubernetes configuration: {exc}", key="options.kubeconfig"
        ) from None


class KubernetesBackend:
    def __init__(self, config: RunnerConfig, settings: Settings) -> None:
        options = config.options
        self.limits = config.limits
        self.instance = settings.instance
        self.local = Volumes.local(settings)
        self.config = kube_config(options.get("kubeconfig"))
        namespace = options.get("namespace")
        if not namespace and SERVICE_ACCOUNT_NAMESPACE.is_file():
            namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
        current = self.config.get()
        self.server = current.cluster.server if current is not None else "?"
        self.namespace = str(namespace or (current.namespace if current is not None else "default"))
        self.pod_options = PodOptions(
            claims=dict(options.get("claims") or {}),
            image_pull_policy=str(options.get("image_pull_policy") or "IfNotPresent"),
            node_selector=dict(options.get("node_selector") or {}),
            tolerations=list(options.get("tolerations") or []),
            service_account=options.get("service_account"),
            stop_grace=float(options.get("stop_grace", 10.0)),
            tmp_size=str(options.get("tmp_size") or "64Mi"),
            finished_ttl=int(options.get("finished_ttl", 3600)),
        )
        self.unschedulable_grace = float(options.get("unschedulable_grace", 300.0))
        self.owner_name = options.get("owner_config_map")
        self._owner: dict[str, Any] | None = None
        self.selector: dict[str, Any] = {LABEL_INSTANCE: dns_label(self.instance)}
        self._client: AsyncClient | None = None
        self._jobs: Informer | None = None
        self._pods: Informer | None = None
        self._changed = asyncio.Event()
        self._made: dict[str, float] = {}  # Job name -> when this process created it
        self._deleting: set[asyncio.Task[None]] = set()
        self.files = FileWork(settings.file_timeout, name="kubernetes-files")

    # -- the client and the watches ------------------------------------------------------

    def _wake(self) -> None:
        self._changed.set()

    def client(self) -> AsyncClient:
        if self._client is None:
            self._client = AsyncClient(self.config, namespace=self.namespace,
                                       field_manager="appliance")  # fmt: skip
        return self._client

    def _watches(self) -> tuple[Informer, Informer]:
        if self._jobs is None or self._pods is None:
            self._jobs = Informer(self.client(), Job, self.namespace, self.selector, self._wake)
            self._pods = Informer(self.client(), Pod, self.namespace, self.selector, self._wake)
            self._jobs.start()
            self._pods.start()
        return self._jobs, self._pods

    async def _synced(self) -> tuple[Informer, Informer]:
        jobs, pods = self._watches()
        try:
            async with asyncio.timeout(15):
                await jobs.synced.wait()
                await pods.synced.wait()
        except TimeoutError:
            raise RunnerUnavailableError(
                f"the Kubernetes API does not answer: {jobs.error or pods.error or 'no list in 15 s'}"
            ) from None
        return jobs, pods

    async def _call(self, what: str, call: Any) -> Any:
        """An API call; RunnerUnavailableError if the apiserver cannot be reached."""
        try:
            return await call
        except ApiError:
            raise
        except (httpx2.HTTPError, OSError) as exc:
            raise RunnerUnavailableError(
                f"the Kubernetes API does not answer ({what}): {exc}"
            ) from None

    # -- submit ---------------------------------------------------------------------------

    @staticmethod
    def parse(handle: str) -> tuple[str, str, int]:
        name, job_id, step = handle.split(":")
        return name, job_id, int(step)

    def _prepare(self, run: StepRun, user: str) -> None:
        """The job's directory and its files, the job's user's; the inputs' mount points
        made without following links (the kubelet would make them as root, or through a
        link an earlier step left)."""
        workdir = self.local.path(run.plan.work)
        owner = parse_user(user)
        mine = os.geteuid() == 0
        if mine:
            os.chown(workdir, *owner, follow_symlinks=False)
        for staged in run.plan.inputs:
            if not is_plain(workdir, staged.path):
                fresh_file(workdir, staged.path)
        for mount in run.plan.mounts:
            make_dirs(workdir, mount.source, owner if mine else None)
        if mine:
            step = run.current
            for name in (step.stdout, step.stderr):  # made by the scheduler, written by the job
                with contextlib.suppress(FileNotFoundError):
                    os.chown(workdir / name, *owner, follow_symlinks=False)

    async def _owner_reference(self) -> dict[str, Any] | None:
        """The ConfigMap that owns the Jobs (option ``owner_config_map``), as a reference."""
        if not self.owner_name:
            return None
        if self._owner is None:
            try:
                owner = await self._call("get ConfigMap",
                                         self.client().get(ConfigMap, self.owner_name))  # fmt: skip
            except ApiError as exc:
                raise RunnerUnavailableError(f"cannot read the ConfigMap {self.owner_name} "
                                             f"that owns the Jobs: {exc.status.message}") from None  # fmt: skip
            self._owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": self.owner_name,
                           "uid": owner.metadata.uid}  # fmt: skip
        return self._owner

    async def submit(self, run: StepRun) -> str:
        limits = run.plan.resources.over(self.limits)
        manifest = job_manifest(run, limits, instance=self.instance, options=self.pod_options)
        owner = await self._owner_reference()
        if owner is not None:
            manifest["metadata"]["ownerReferences"] = [owner]
        name = manifest["metadata"]["name"]
        handle = f"{name}:{run.job_id}:{run.step}"
        await self._synced()
        await asyncio.to_thread(self._prepare, run, limits.user or DEFAULT_USER)
        try:
            await self._call("create Job", self.client().create(from_dict(manifest)))
        except ApiError as exc:
            if exc.status.code == 409:  # made before (a restarted scheduler): the same step
                return handle
            raise RunnerError(f"Kubernetes refused the Job {name}: {exc.status.message}") from None
        now = time.monotonic()
        self._made = {n: t for n, t in self._made.items() if now - t < JUST_MADE_SECONDS}
        self._made[name] = now
        return handle

    # -- status ---------------------------------------------------------------------------

    def _workdir(self, job_id: str) -> Path | None:
        try:
            return self.local.path(Location(JOBS, job_id))
        except PlanError:
            return None

    @staticmethod
    def _pods_by_job(pods: Informer) -> dict[str, dict[str, Any]]:
        """The newest pod of each Job (one pass over the pods, for a whole status round)."""
        newest: dict[str, dict[str, Any]] = {}
        for pod in pods.objects.values():
            metadata = pod.get("metadata") or {}
            job = (metadata.get("labels") or {}).get(JOB_NAME_LABEL)
            if job is None:
                continue
            known = newest.get(job)
            created = str(metadata.get("creationTimestamp") or "")
            if known is None or created >= str(
                (known.get("metadata") or {}).get("creationTimestamp") or ""
            ):
                newest[job] = pod
        return newest

    def _status(self, handle: str, jobs: Informer, pods: dict[str, dict[str, Any]], now: float,
                record: ExitRecord | None) -> RunStatus:  # fmt: skip
        """A step's status from its exit record (read beforehand, off the loop), else from
        its Job and pod."""
        name = self.parse(handle)[0]
        if record is not None:
            return RunStatus(RunState.FINISHED, record.code, record.message, record.oom)
        job = jobs.objects.get(name)
        if job is not None:
            self._made.pop(name, None)  # seen: from now on, its absence means it was deleted
        else:
            made = self._made.get(name)
            if made is not None and time.monotonic() - made < JUST_MADE_SECONDS:
                return RunStatus(
                    RunState.QUEUED, reason="starting", message="its Job is being made"
                )
            return RunStatus(RunState.LOST, message=f"Kubernetes has no Job {name}")
        status = step_status(job, pods.get(name), now, self.unschedulable_grace)
        if status.state is RunState.FINISHED and status.exit_code == NEVER_RAN and status.message:
            self._forget_later(name)  # it will never run: removed now
        return status

    def _records(self, handles: Sequence[str]) -> list[tuple[Path | None, int]]:
        return [(self._workdir(job_id), step) for _, job_id, step in map(self.parse, handles)]

    async def _keep_ends(self, ended: list[tuple[str, RunStatus]]) -> None:
        """Write the exit record of each step seen to end (kept after its Job is gone)."""
        writes = [(workdir, status, step) for handle, status in ended
                  for (workdir, step) in self._records([handle]) if workdir is not None]  # fmt: skip

        def write() -> None:
            for workdir, status, step in writes:
                with contextlib.suppress(OSError):
                    code = NEVER_RAN if status.exit_code is None else status.exit_code
                    write_exit_record(workdir, code, status.message, step=step, oom=status.oom)

        if writes:
            await self.files.call("keep exit records", write)

    def _forget_later(self, name: str) -> None:
        async def delete() -> None:
            with contextlib.suppress(Exception):
                await self.client().delete(Job, name, cascade=CascadeType.BACKGROUND)

        task = asyncio.get_running_loop().create_task(delete())
        self._deleting.add(task)  # held until done (the loop keeps only weak references)
        task.add_done_callback(self._deleting.discard)

    async def status(self, handles: Sequence[str]) -> dict[str, RunStatus]:
        if not handles:
            return {}
        records = await self.files.call("read exit records", read_exit_records,
                                        self._records(handles))  # fmt: skip
        jobs, pods = await self._synced()
        now, newest = time.time(), self._pods_by_job(pods)
        result = {handle: self._status(handle, jobs, newest, now, record)
                  for handle, record in zip(handles, records, strict=True)}  # fmt: skip
        await self._keep_ends([(handle, status) for (handle, status), record
                               in zip(result.items(), records, strict=True)
                               if record is None and status.state is RunState.FINISHED])  # fmt: skip
        return result

    async def changed(self, timeout: float) -> None:
        """Return when one of this instance's Jobs or pods changed (or after ``timeout``)."""
        self._watches()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        self._changed.clear()

    # -- cancel, orphans, checks, close -------------------------------------------------------

    async def cancel(self, handle: str) -> None:
        name, job_id, step = self.parse(handle)
        workdir = self._workdir(job_id)
        [record] = await self.files.call("read exit records", read_exit_records,
                                         self._records([handle]))  # fmt: skip
        if workdir is not None and record is None:
            jobs, pods = await self._synced()
            status = self._status(handle, jobs, self._pods_by_job(pods), time.time(), None)
            if status.state is not RunState.FINISHED:
                await self.files.call("record a cancel", _cancelled, workdir, step)
        try:
            await self._call("delete Job", self.client().delete(
                Job, name, cascade=CascadeType.BACKGROUND,
                grace_period=int(self.pod_options.stop_grace)))  # fmt: skip
        except ApiError as exc:
            if exc.status.code != 404:
                raise RunnerError(f"Kubernetes refused to delete the Job {name}: "
                                  f"{exc.status.message}") from None  # fmt: skip

    async def remove_orphans(self, active_jobs: set[str]) -> list[str]:
        """Delete this instance's Jobs whose jobs are over (or unknown)."""
        jobs, _ = await self._synced()
        removed = []
        for name, job in list(jobs.objects.items()):
            labels = (job.get("metadata") or {}).get("labels") or {}
            if labels.get(LABEL_JOB) in active_jobs or (job.get("metadata") or {}).get(
                "deletionTimestamp"
            ):
                continue
            with contextlib.suppress(ApiError):
                await self._call("delete Job",
                                 self.client().delete(Job, name, cascade=CascadeType.BACKGROUND))  # fmt: skip
                removed.append(name)
        return removed

    async def probe(self) -> str:
        try:
            listed = self.client().list(Job, namespace=self.namespace, labels=self.selector)
            count = 0
            async for _ in listed:
                count += 1
        except ApiError as exc:
            raise RunnerError(f"Kubernetes refused to list Jobs in {self.namespace}: "
                              f"{exc.status.message}") from None  # fmt: skip
        except (httpx2.HTTPError, OSError) as exc:
            raise RunnerError(f"the Kubernetes API does not answer: {exc}") from None
        return f"Kubernetes API {self.server}, namespace {self.namespace}: {count} Jobs of this instance"

    async def missing_images(self, images: Sequence[str]) -> list[str]:
        """Images no node has (empty when the nodes cannot be listed, or the pull policy
        pulls them from a registry anyway)."""
        if self.pod_options.image_pull_policy != "Never":
            return []
        present: set[str] = set()
        try:
            async for node in self.client().list(Node):
                for image in (node.status.images if node.status else None) or []:
                    present.update(image.names or [])
        except (ApiError, httpx2.HTTPError, OSError):
            return []
        known = present | {
            n.removeprefix("docker.io/library/").removeprefix("docker.io/") for n in present
        }
        return [i for i in images if i not in known]

    async def close(self) -> None:
        for informer in (self._jobs, self._pods):
            if informer is not None:
                await informer.close()
        self._jobs = self._pods = None
        if self._client is not None:
            await self._client.close()
            self._client = None
        self.files.close()


def create(config: RunnerConfig, settings: Settings) -> KubernetesBackend:
    return KubernetesBackend(config, settings)


def _cancelled(workdir: Path, step: int) -> None:
    if workdir.is_dir():
        write_exit_record(workdir, 143, "cancelled", step=step)
