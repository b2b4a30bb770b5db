"""The local worker pool (``appliance worker``): N slots running commands as subprocesses.

It answers requests from the scheduler's ``local`` runner over ZeroMQ (submit, status,
cancel, wait). Commands run without a shell, each through ``appliance.jobwrap`` in its
own session, with a clean environment (PATH plus the job's variables).

The pool keeps each job's state in a small file of its own under its state folder,
written only when that job changes: ``active/<handle>.json`` while it is queued or
running, moved to ``finished/<hour>/<handle>.json`` when it ends. A restart reads the
active ones only: it finds the jobs that ended meanwhile (from their exit records),
keeps watching those still running and reports the rest as lost, so no job is left
unknown. Finished jobs are kept for a day and pruned an hour's folder at a time, without
reading the others; a status asked for a finished job that is no longer in memory is
read from its file. Each event costs the same however many jobs the pool has run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from appliance import jobwrap
from appliance.aio import wait_event
from appliance.exits import read_exit_record, write_exit_record
from appliance.messaging import Message

log = logging.getLogger(__name__)
KEEP_FINISHED_SECONDS = 24 * 3600
BUCKET_SECONDS = 3600  # finished jobs are kept in one folder per hour
REMEMBERED = 10_000  # finished jobs whose state stays in memory too


@dataclass
class WorkerJob:
    handle: str
    workdir: str
    argv: list[str]
    env: dict[str, str]
    inputs: list[dict[str, str]] = field(default_factory=list)
    state: str = "queued"  # queued, running, finished, lost
    pid: int | None = None
    ended_at: float | None = None
    step: int = 0
    stdout: str = "stdout"
    stderr: str = "stderr"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return JOBWRAP.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()  # not a reused pid
    except OSError:
        return True


# The wrapper every job runs under, as a script: it needs no site packages to start.
JOBWRAP = str(Path(jobwrap.__file__).resolve())


def _write_json(path: Path, data: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data))
    temporary.replace(path)


class JobFiles:
    """Where the pool keeps each job's state: one small file per job."""

    def __init__(self, state_dir: Path) -> None:
        self.active = state_dir / "active"
        self.finished = state_dir / "finished"
        self.active.mkdir(parents=True, exist_ok=True)
        self.finished.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def bucket(at: float) -> str:
        return time.strftime("%Y%m%d%H", time.gmtime(at))

    def save(self, job: WorkerJob) -> None:
        _write_json(self.active / f"{job.handle}.json", asdict(job))

    def finish(self, job: WorkerJob) -> None:
        """Move the job's file among the finished ones of its hour."""
        folder = self.finished / self.bucket(job.ended_at or time.time())
        folder.mkdir(exist_ok=True)
        _write_json(folder / f"{job.handle}.json", asdict(job))
        with contextlib.suppress(FileNotFoundError):
            (self.active / f"{job.handle}.json").unlink()

    def load_active(self) -> list[WorkerJob]:
        jobs = []
        for path in sorted(self.active.glob("*.json")):
            try:
                jobs.append(WorkerJob(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                log.error("job state %s is damaged; ignoring it", path)
        return jobs

    def find_finished(self, handle: str, now: float) -> WorkerJob | None:
        """A finished job's state, from the folders of the hours it may have ended in."""
        for age in range(0, KEEP_FINISHED_SECONDS + BUCKET_SECONDS, BUCKET_SECONDS):
            path = self.finished / self.bucket(now - age) / f"{handle}.json"
            try:
                return WorkerJob(**json.loads(path.read_text()))
            except FileNotFoundError:
                continue
            except (OSError, ValueError, TypeError):
                return None
        return None

    def prune(self, now: float) -> int:
        """Remove the folders of hours older than the keeping time; returns how many."""
        oldest = self.bucket(now - KEEP_FINISHED_SECONDS)
        removed = 0
        for folder in self.finished.iterdir():
            if folder.name < oldest:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed


class WorkerPool:
    def __init__(self, slots: int, state_dir: Path, *, grace: float = 10.0) -> None:
        self.slots = slots
        self.files = JobFiles(state_dir)
        self.grace = grace
        self.jobs: dict[str, WorkerJob] = {}  # queued and running
        self.ended: OrderedDict[str, WorkerJob] = OrderedDict()  # recently finished
        self.queue: deque[str] = deque()
        self.running: dict[str, asyncio.Task[None]] = {}
        self.base_path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        self.changes = 0  # jobs started or ended so far; "wait" requests watch it
        self.change = asyncio.Event()
        self.pruned_bucket = ""

    # -- state ---------------------------------------------------------------------------

    def recover(self) -> None:
        """Load the jobs an earlier run of the pool left queued or running."""
        for job in self.files.load_active():
            self.jobs[job.handle] = job
            if job.state == "queued":
                self.queue.append(job.handle)
            elif job.state == "running":
                if read_exit_record(Path(job.workdir), job.step) is not None:
                    self._ended(job, announce=False)
                elif job.pid is not None and _alive(job.pid):
                    self.running[job.handle] = asyncio.create_task(self._watch(job))
                else:
                    job.state = "lost"
                    log.warning("job %s ended while the pool was down, without a record",
                                job.handle)  # fmt: skip
                    self._ended(job, announce=False)
            else:
                self._ended(job, announce=False)
        self._fill_slots()

    # -- running ---------------------------------------------------------------------------

    def _fill_slots(self) -> None:
        while self.queue and len(self.running) < self.slots:
            handle = self.queue.popleft()
            job = self.jobs[handle]
            self.running[handle] = asyncio.create_task(self._run(job))

    async def _run(self, job: WorkerJob) -> None:
        workdir = Path(job.workdir)
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            for staged in job.inputs:
                target = workdir / staged["path"]
                if target.exists():  # staged by an earlier step
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(shutil.copyfile, staged["source"], target)
                target.chmod(0o444)
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", JOBWRAP, str(workdir), str(job.step), job.stdout,
                job.stderr, "--", *job.argv, cwd=workdir, env={"PATH": self.base_path, **job.env},
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            write_exit_record(workdir, 126, f"could not start: {exc}", step=job.step)
            self._ended(job)
            return
        job.state, job.pid = "running", process.pid
        self.files.save(job)
        self._changed()
        try:
            await process.wait()
        finally:
            self._ended(job)

    async def _watch(self, job: WorkerJob) -> None:
        """Follow a job started by an earlier run of the pool (not our child)."""
        assert job.pid is not None
        workdir = Path(job.workdir)
        while _alive(job.pid) and read_exit_record(workdir, job.step) is None:
            await asyncio.sleep(0.5)
        if read_exit_record(workdir, job.step) is None:
            job.state = "lost"
        self._ended(job)

    def _ended(self, job: WorkerJob, *, announce: bool = True) -> None:
        if job.state != "lost":
            job.state = "finished"
        job.ended_at = time.time()
        self.running.pop(job.handle, None)
        self.jobs.pop(job.handle, None)
        self.ended[job.handle] = job
        while len(self.ended) > REMEMBERED:
            self.ended.popitem(last=False)
        self.files.finish(job)
        self._prune(job.ended_at)
        if announce:
            self._fill_slots()
            self._changed()

    def _changed(self) -> None:
        """A job started or ended: answer everyone waiting for a change."""
        self.changes += 1
        self.change.set()
        self.change = asyncio.Event()

    async def wait(self, since: int, timeout: float) -> Message:
        """Answer once the change count differs from ``since`` (at once if it does
        already), or after ``timeout`` seconds; with the count."""
        if self.changes == since:
            await wait_event(self.change, min(max(timeout, 0.0), 60.0))
        return {"changes": self.changes}

    def _prune(self, now: float) -> None:
        """Once an hour, the folder of finished jobs that are a day old goes."""
        bucket = self.files.bucket(now)
        if bucket != self.pruned_bucket:
            self.pruned_bucket = bucket
            self.files.prune(now)

    # -- requests ----------------------------------------------------------------------------

    async def handle(self, request: Message) -> Message:
        method = request.get("method")
        if method == "ping":
            return {"slots": self.slots, "running": len(self.running), "queued": len(self.queue)}
        if method == "submit":
            return self.submit(request)
        if method == "status":
            return {"statuses": {h: self.status(h) for h in request.get("handles", [])}}
        if method == "cancel":
            await self.cancel(str(request.get("handle")))
            return {}
        if method == "wait":
            return await self.wait(int(request.get("since", -1)), float(request.get("timeout", 5)))
        return {"error": f"unknown method {method!r}"}

    def _known(self, handle: str) -> WorkerJob | None:
        job = self.jobs.get(handle) or self.ended.get(handle)
        if job is None:
            job = self.files.find_finished(handle, time.time())
        return job

    def submit(self, request: Message) -> Message:
        handle = str(request["job_id"])
        if self._known(handle) is None:  # a repeated submit is the same job
            argv = [str(a) for a in request["argv"]]
            if not argv:
                return {"error": "empty command"}
            job = WorkerJob(
                handle=handle,
                workdir=str(request["workdir"]),
                argv=argv,
                env={str(k): str(v) for k, v in dict(request.get("env") or {}).items()},
                inputs=[
                    {"source": str(i["source"]), "path": str(i["path"])}
                    for i in request.get("inputs", [])
                ],
                step=int(request.get("step") or 0),
                stdout=str(request.get("stdout") or "stdout"),
                stderr=str(request.get("stderr") or "stderr"),
            )
            self.jobs[handle] = job
            self.queue.append(handle)
            self.files.save(job)
            self._fill_slots()
        return {"handle": handle}

    def status(self, handle: str) -> Message:
        job = self._known(handle)
        if job is None:
            return {"state": "lost", "message": "the worker pool has no record of this job"}
        if job.state == "lost":
            return {"state": "lost", "message": "the job ended while the worker pool was down"}
        if job.state == "finished":
            record = read_exit_record(Path(job.workdir), job.step)
            if record is None:
                return {"state": "finished", "exit_code": -1, "message": "ended without a record"}
            return {"state": "finished", "exit_code": record.code, "message": record.message}
        return {"state": job.state}

    async def cancel(self, handle: str) -> None:
        job = self.jobs.get(handle)
        if job is None or job.state in ("finished", "lost"):
            return
        if job.state == "queued":
            with contextlib.suppress(ValueError):
                self.queue.remove(handle)
            write_exit_record(Path(job.workdir), -signal.SIGTERM, "cancelled before it started",
                              step=job.step)  # fmt: skip
            self._ended(job)
            return
        if job.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.pid, signal.SIGTERM)
            asyncio.get_running_loop().call_later(self.grace, self._kill, job.pid, handle)

    def _kill(self, pid: int, handle: str) -> None:
        job = self.jobs.get(handle)
        if job is not None and job.state == "running":
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    async def close(self) -> None:
        """Stop taking work; running jobs go on (their wrappers record how they end)."""
        for task in self.running.values():
            task.cancel()
