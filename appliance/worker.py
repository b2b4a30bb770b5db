"""The local worker pool (``appliance worker``): N slots running commands as subprocesses.

It answers requests from the scheduler's ``local`` runner over ZeroMQ (submit, status,
cancel). Commands run without a shell, each through ``appliance.jobwrap`` in its own
session, with a clean environment (PATH plus the job's variables). The pool keeps its
jobs in a state file: after a restart it finds the jobs that ended meanwhile (from their
exit records), keeps watching those still running, and reports the rest as lost, so no
job is left unknown.
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
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from appliance import jobwrap
from appliance.jobdirs import read_exit_record, write_exit_record
from appliance.messaging import Message

log = logging.getLogger(__name__)
KEEP_FINISHED_SECONDS = 24 * 3600


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


class WorkerPool:
    def __init__(self, slots: int, state_file: Path, *, grace: float = 10.0) -> None:
        self.slots = slots
        self.state_file = state_file
        self.grace = grace
        self.jobs: dict[str, WorkerJob] = {}
        self.queue: deque[str] = deque()
        self.running: dict[str, asyncio.Task[None]] = {}
        self.base_path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        self.changes = 0  # jobs started or ended so far; "wait" requests watch it
        self.change = asyncio.Event()

    # -- state ---------------------------------------------------------------------------

    def save(self) -> None:
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps({h: asdict(j) for h, j in self.jobs.items()}))
        temporary.replace(self.state_file)

    def recover(self) -> None:
        """Load the state file left by an earlier run of the pool."""
        try:
            stored: dict[str, Any] = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return
        except ValueError:
            log.error("state file %s is damaged; starting empty", self.state_file)
            return
        for handle, data in stored.items():
            job = WorkerJob(**data)
            self.jobs[handle] = job
            if job.state == "queued":
                self.queue.append(handle)
            elif job.state == "running":
                if read_exit_record(Path(job.workdir)) is not None:
                    job.state = "finished"
                elif job.pid is not None and _alive(job.pid):
                    self.running[handle] = asyncio.create_task(self._watch(job))
                else:
                    job.state = "lost"
                    log.warning("job %s ended while the pool was down, without a record", handle)
        self.save()
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
                target.parent.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(shutil.copyfile, staged["source"], target)
                target.chmod(0o444)
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", JOBWRAP, str(workdir), "--", *job.argv,
                cwd=workdir, env={"PATH": self.base_path, **job.env},
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            write_exit_record(workdir, 126, f"could not start: {exc}")
            self._ended(job)
            return
        job.state, job.pid = "running", process.pid
        self.save()
        self._changed()
        try:
            await process.wait()
        finally:
            self._ended(job)

    async def _watch(self, job: WorkerJob) -> None:
        """Follow a job started by an earlier run of the pool (not our child)."""
        assert job.pid is not None
        while _alive(job.pid) and read_exit_record(Path(job.workdir)) is None:
            await asyncio.sleep(0.5)
        if read_exit_record(Path(job.workdir)) is None:
            job.state = "lost"
            self.running.pop(job.handle, None)
            self.save()
            self._fill_slots()
            return
        self._ended(job)

    def _ended(self, job: WorkerJob) -> None:
        if job.state != "lost":
            job.state = "finished"
        job.ended_at = time.time()
        self.running.pop(job.handle, None)
        self._prune()
        self.save()
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.change.wait(), min(max(timeout, 0.0), 60.0))
        return {"changes": self.changes}

    def _prune(self) -> None:
        cutoff = time.time() - KEEP_FINISHED_SECONDS
        for handle in [h for h, j in self.jobs.items() if j.ended_at and j.ended_at < cutoff]:
            del self.jobs[handle]

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

    def submit(self, request: Message) -> Message:
        handle = str(request["job_id"])
        if handle not in self.jobs:  # a repeated submit is the same job
            argv = [str(a) for a in request["argv"]]
            if not argv:
                return {"error": "empty command"}
            self.jobs[handle] = WorkerJob(
                handle=handle,
                workdir=str(request["workdir"]),
                argv=argv,
                env={str(k): str(v) for k, v in dict(request.get("env") or {}).items()},
                inputs=[
                    {"source": str(i["source"]), "path": str(i["path"])}
                    for i in request.get("inputs", [])
                ],
            )
            self.queue.append(handle)
            self.save()
            self._fill_slots()
        return {"handle": handle}

    def status(self, handle: str) -> Message:
        job = self.jobs.get(handle)
        if job is None:
            return {"state": "lost", "message": "the worker pool has no record of this job"}
        if job.state == "lost":
            return {"state": "lost", "message": "the job ended while the worker pool was down"}
        if job.state == "finished":
            record = read_exit_record(Path(job.workdir))
            if record is None:
                return {"state": "finished", "exit_code": -1, "message": "ended without a record"}
            return {"state": "finished", "exit_code": record[0], "message": record[1]}
        return {"state": job.state}

    async def cancel(self, handle: str) -> None:
        job = self.jobs.get(handle)
        if job is None or job.state in ("finished", "lost"):
            return
        if job.state == "queued":
            with contextlib.suppress(ValueError):
                self.queue.remove(handle)
            write_exit_record(Path(job.workdir), -signal.SIGTERM, "cancelled before it started")
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
        self.save()
