"""The scheduler: takes accepted jobs from MongoDB, starts them on runners, follows them.

One ``Scheduler`` per process, with an ``owner`` id of its own. It holds the jobs it has
claimed under leases it keeps renewing; a job whose holder died is taken over when its
lease expires. It is woken over ZeroMQ when a job is submitted or cancelled and sweeps
every ``sweep_seconds`` for anything it was not woken for. Running jobs are polled in one
batch per runner. On stop it takes no new work and gives its jobs' leases back, leaving
them running for the next scheduler to pick up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Coroutine, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from appliance import retention
from appliance.catalogue import Catalogue
from appliance.errors import (
    RunnerError,
    RunnerUnavailableError,
    StoreError,
)
from appliance.held import Held
from appliance.jobdirs import collect_outputs, job_dir, make_job_dir
from appliance.messaging import WakeReceiver
from appliance.preparation import Refused, prepare
from appliance.runners.base import Backend, RunState, RunStatus
from appliance.selection import Selector, load_selector
from appliance.settings import Settings
from appliance.states import FINAL, JobState, sources_of, state_for_exit
from appliance.store import Doc, Store, new_id, utcnow
from appliance.submission import record_entry

log = logging.getLogger(__name__)

IN_FLIGHT = (JobState.QUEUED, JobState.RUNNING, JobState.CANCELLING, JobState.UNKNOWN)
UNKNOWN_AFTER = 30.0  # seconds a runner may be unreachable before its jobs show UNKNOWN
CANCEL_RESEND = 15.0
CANCEL_GIVE_UP = 60.0
ORPHAN_SECONDS = 60.0
CHANGE_WAIT = 10.0  # longest wait for a runner's change notice before asking again
KILLED = {137, 143, -9, -15}  # SIGKILL and SIGTERM, as shells and as Python report them


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        catalogue: Catalogue,
        backends: Mapping[str, Backend],
        *,
        owner: str | None = None,
        environ: Mapping[str, str] | None = None,
        poll_seconds: float = 0.2,
        submit_retry_seconds: float = 300.0,
        concurrency: int = 8,
        listen: bool = True,
        heartbeat: Path | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.catalogue = catalogue
        self.backends = dict(backends)
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{new_id()[:6]}"
        self.environ = dict(os.environ if environ is None else environ)
        self.poll_seconds = poll_seconds
        self.submit_retry_seconds = submit_retry_seconds
        self.listen = listen
        self.heartbeat = heartbeat
        self.held: dict[str, Held] = {}
        self.claimed: set[str] = set()  # being started: their leases are renewed too
        self.kick = asyncio.Event()
        self.poke = asyncio.Event()
        self.starting = asyncio.Semaphore(concurrency)
        self.next_adoption = 0.0  # when dispatch looks for jobs to adopt next
        self.start_tasks: set[asyncio.Task[None]] = set()
        self.side_tasks: set[asyncio.Task[None]] = set()
        self.selectors: dict[str, Selector] = {}
        for service in catalogue.services.values():
            if service.selector:
                self.selectors[service.id] = load_selector(service.selector)

    # -- the process -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        receiver = WakeReceiver(self.settings.scheduler_address) if self.listen else None
        takers = [asyncio.create_task(self._dispatch_loop(), name="dispatch")]
        if receiver is not None:
            takers.append(asyncio.create_task(self._listen(receiver), name="listen"))
        followers = [
            asyncio.create_task(self._monitor_loop(), name="monitor"),
            asyncio.create_task(self._renew_loop(), name="renew"),
            *(asyncio.create_task(self._follow_changes(backend), name=f"changes {name}")
              for name, backend in self.backends.items() if hasattr(backend, "changed")),
        ]  # fmt: skip
        log.info("scheduler %s started with runners: %s", self.owner, ", ".join(self.backends))
        try:
            await stop.wait()
        finally:
            for task in takers:
                task.cancel()
            await asyncio.gather(*takers, return_exceptions=True)
            if self.start_tasks:  # let jobs being started finish starting
                await asyncio.wait(self.start_tasks, timeout=30)
            for task in [*followers, *self.side_tasks]:
                task.cancel()
            await asyncio.gather(*followers, *self.side_tasks, return_exceptions=True)
            await self._give_back()
            if receiver is not None:
                receiver.close()
            log.info("scheduler %s stopped; %d running jobs left for the next one",
                     self.owner, len(self.held))  # fmt: skip

    async def _give_back(self) -> None:
        for job_id in list(self.held):
            with contextlib.suppress(StoreError):
                await self.store.release_job(self.owner, job_id)
        self.held.clear()

    async def _listen(self, receiver: WakeReceiver) -> None:
        while True:
            message = await receiver.receive()
            job_id = message.get("job")
            if message.get("kind") == "submitted" and isinstance(job_id, str):
                try:  # the web process left it to us
                    await record_entry(self.store, job_id, message.get("submitted_at"))
                except StoreError as exc:  # the next start of a scheduler rebuilds entries
                    log.warning("job %s: cannot record it as active: %s", job_id, exc)
            if message.get("kind") == "cancel" and job_id in self.held:
                self.poke.set()
            self.kick.set()

    # -- taking work -----------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        next_cleanup = 0.0
        while True:
            self.kick.clear()
            try:
                await self.dispatch()
                if time.monotonic() >= next_cleanup:
                    # A job whose wake-up was lost (its message died with a process) has
                    # no active entry yet: this makes it, within a minute.
                    if added := await self.store.rebuild_active():
                        log.warning("%d jobs had no active entry (a wake-up was lost)", added)
                        self.kick.set()
                    await self.remove_orphans()
                    await retention.sweep(self.store, self.settings)
                    next_cleanup = time.monotonic() + ORPHAN_SECONDS
            except StoreError as exc:
                log.warning("MongoDB unavailable, pausing: %s", exc)
                await asyncio.sleep(1.0)
                continue
            except Exception:  # a bug must not stop the scheduler taking work
                log.exception("dispatching failed; trying again")
                await asyncio.sleep(1.0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.kick.wait(), self.settings.sweep_seconds)

    async def dispatch(self) -> None:
        """Start every claimable accepted job, and adopt in-flight jobs whose holder died."""
        lease = self.settings.lease_seconds
        while True:
            await self.starting.acquire()
            job = await self.store.claim_job(self.owner, [JobState.ACCEPTED], lease)
            if job is None:
                self.starting.release()
                break
            if self._ours(job):
                self.starting.release()
                continue
            task = asyncio.create_task(self._start(job))
            self.start_tasks.add(task)
            task.add_done_callback(self._started)
        if time.monotonic() < self.next_adoption:  # a dead holder's jobs wait for the lease
            return  # to run out: looking a few times a lease is enough, not at every wake-up
        self.next_adoption = time.monotonic() + lease / 4
        while (job := await self.store.claim_job(self.owner, IN_FLIGHT, lease)) is not None:
            if not self._ours(job):
                await self._adopt(job)

    def _ours(self, job: Doc) -> bool:
        """A job this process already works on, whose lease ran out (a database outage
        stalled the renewals): the claim renewed it; it must not be started twice."""
        job_id = str(job["_id"])
        if job_id in self.claimed or job_id in self.held:
            log.info("job %s: lease renewed after it ran out", job_id)
            return True
        return False

    async def remove_orphans(self) -> None:
        await retention.remove_orphans(self.store, self.backends)

    def _started(self, task: asyncio.Task[None]) -> None:
        self.start_tasks.discard(task)
        self.starting.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("starting a job failed", exc_info=task.exception())

    async def _start(self, job: Doc) -> None:
        job_id = str(job["_id"])
        self.claimed.add(job_id)
        try:
            await self._start_claimed(job, job_id)
        finally:
            self.claimed.discard(job_id)

    async def _start_claimed(self, job: Doc, job_id: str) -> None:
        if job_id in await self.store.cancel_requested([job_id]):
            await self._end(job_id, JobState.INTERRUPTED, "cancelled before it started")
            return
        workdir = job_dir(self.settings.jobs_dir, job_id)
        prepared = prepare(job, self.catalogue, self.selectors, self.environ, workdir)
        if isinstance(prepared, Refused):
            await self._end(job_id, prepared.state, prepared.reason)
            return
        backend = self.backends.get(prepared.runner)
        if backend is None:
            await self._end(
                job_id, JobState.ERROR, f"runner {prepared.runner!r} is not running here"
            )
            return
        try:
            await asyncio.to_thread(make_job_dir, workdir)
        except OSError as exc:
            await self._end(job_id, JobState.ERROR, f"cannot make the job's directory: {exc}")
            return
        spec = prepared.spec
        try:
            handle = await backend.submit(spec)
        except RunnerUnavailableError as exc:
            await self._retry_later(job, prepared.runner, exc)
            return
        except RunnerError as exc:
            await self._end(job_id, JobState.ERROR, str(exc))
            return
        staged = [i.path for i in spec.inputs]
        fields = {"runner": prepared.runner, "backend": prepared.backend, "handle": handle,
                  "command": list(spec.argv), "staged": staged, "queued_at": utcnow()}  # fmt: skip
        if await self.store.move_job(
            job_id, [JobState.ACCEPTED], JobState.QUEUED, fields, owner=self.owner
        ):
            service = self.catalogue.services.get(spec.service_id)
            self.held[job_id] = Held(job_id, service, prepared.runner, handle, JobState.QUEUED,
                                     time_limit=spec.resources.time_limit, staged=set(staged))  # fmt: skip
            self.poke.set()
        else:  # someone else holds it now (we were too slow): leave it to them
            log.warning("lost the lease of job %s while starting it", job_id)

    async def _retry_later(self, job: Doc, runner: str, exc: RunnerUnavailableError) -> None:
        job_id = str(job["_id"])
        now = utcnow()
        first = job.get("first_failure_at") or now
        waited = (now - first).total_seconds()
        if waited >= self.submit_retry_seconds:
            reason = f"runner {runner!r} was unreachable for {waited:.0f} s: {exc}"
            await self._end(job_id, JobState.ERROR, reason)
            return
        attempts = int(job.get("attempts") or 0) + 1
        delay = min(2.0**attempts * 0.5, 30.0)
        log.warning("job %s: %s; trying again in %.1f s", job_id, exc, delay)
        # The lease's expiry doubles as the back-off timer: nobody takes the job before it.
        await self.store.update_job(job_id, {
            "attempts": attempts, "first_failure_at": first, "error": str(exc),
            "lease_owner": None, "lease_expires": now + timedelta(seconds=delay),
        })  # fmt: skip

    async def _adopt(self, job: Doc) -> None:
        job_id = str(job["_id"])
        runner, handle = job.get("runner"), job.get("handle")
        if runner not in self.backends or not handle:
            reason = f"its runner {runner!r} is not configured here; it cannot be followed"
            await self._end(job_id, JobState.ERROR, reason, sources=IN_FLIGHT)
            return
        service = self.catalogue.services.get(str(job.get("service")))
        limit = None
        config = self.catalogue.runners.get(str(runner))
        if service is not None and config is not None:
            limit = service.resources.over(config.limits).time_limit
        held = Held(job_id, service, str(runner), str(handle), JobState(job["state"]),
                    started_at=job.get("started_at"), time_limit=limit,
                    staged=set(job.get("staged") or ()))  # fmt: skip
        if held.state is JobState.CANCELLING:
            self._spawn(self._cancel(held))  # the earlier scheduler may not have sent it
        self.held[job_id] = held
        log.info("adopted job %s (%s) from an earlier scheduler", job_id, held.state)
        self.poke.set()

    # -- following work ---------------------------------------------------------------------

    async def _monitor_loop(self) -> None:
        while True:
            self.poke.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.poke.wait(), self.poll_seconds)
            if self.heartbeat is not None:
                with contextlib.suppress(OSError):
                    self.heartbeat.touch()
            if not self.held:
                continue
            try:
                await self.monitor()
            except StoreError as exc:
                log.warning("MongoDB unavailable, pausing: %s", exc)
                await asyncio.sleep(1.0)
            except Exception:  # a bug must not stop the scheduler following jobs
                log.exception("following jobs failed; trying again")
                await asyncio.sleep(1.0)

    async def _follow_changes(self, backend: Any) -> None:
        """Poke the monitor as soon as a runner says a job started or ended; polling
        every ``poll_seconds`` stays as the fallback."""
        while True:
            try:
                await backend.changed(CHANGE_WAIT)
            except RunnerError:  # unreachable: the monitor reports it; look again later
                await asyncio.sleep(1.0)
                continue
            if self.held:
                self.poke.set()

    async def monitor(self) -> None:
        """One round: cancellations, then the status of every held job, one batch per runner."""
        requested = await self.store.cancel_requested(list(self.held))
        now = time.monotonic()
        for job_id in requested:
            held = self.held.get(job_id)
            if held is not None and (
                held.cancel_sent is None or now - held.cancel_sent > CANCEL_RESEND
            ):
                await self._cancel(held)
        by_runner: dict[str, list[Held]] = {}
        for held in list(self.held.values()):
            by_runner.setdefault(held.runner, []).append(held)
        for runner, group in by_runner.items():
            try:
                statuses = await self.backends[runner].status([h.handle for h in group])
            except RunnerError as exc:
                await self._unreachable(group, exc)
                continue
            for held in group:
                held.unreachable_since = None
                await self._apply(held, statuses.get(held.handle) or RunStatus(RunState.LOST))

    async def _cancel(self, held: Held) -> None:
        now = time.monotonic()
        held.cancel_first = held.cancel_first or now
        held.cancel_sent = now
        if held.state is not JobState.CANCELLING:
            await self._move(held, JobState.CANCELLING)
        self._spawn(self._send_cancel(held))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.side_tasks.add(task)
        task.add_done_callback(self.side_tasks.discard)

    async def _move(
        self, held: Held, state: JobState, fields: dict[str, Any] | None = None
    ) -> bool:
        moved = await self.store.move_job(
            held.job_id, sources_of(state), state, fields, owner=self.owner
        )
        if moved:
            held.state = state
        return moved

    async def _send_cancel(self, held: Held) -> None:
        try:
            await self.backends[held.runner].cancel(held.handle)
        except RunnerError as exc:
            log.warning("cancelling job %s failed (will try again): %s", held.job_id, exc)

    async def _unreachable(self, group: list[Held], exc: RunnerError) -> None:
        now = time.monotonic()
        for held in group:
            held.unreachable_since = held.unreachable_since or now
            waited = now - held.unreachable_since
            if waited > self.submit_retry_seconds:
                await self._finish(
                    held,
                    JobState.ERROR,
                    None,
                    f"its runner was unreachable for {waited:.0f} s: {exc}",
                )
            elif waited > UNKNOWN_AFTER and held.state is not JobState.UNKNOWN:
                await self._move(held, JobState.UNKNOWN)

    async def _apply(self, held: Held, status: RunStatus) -> None:
        if status.state is RunState.LOST:
            await self._finish(
                held, JobState.ERROR, None, f"the runner lost the job: {status.message}"
            )
            return
        if status.state is RunState.FINISHED:
            code = status.exit_code if status.exit_code is not None else -1
            cancelled = held.cancel_first is not None and not held.timed_out
            state = state_for_exit(code, cancelled=cancelled)
            message = status.message
            if held.timed_out and state is not JobState.COMPLETED:
                state, message = (
                    JobState.FAILED,
                    f"the job exceeded its time limit of {held.time_limit:g} s",
                )
            elif cancelled and state is JobState.INTERRUPTED:
                message = message or "cancelled"
            elif code in KILLED and not message:
                message = (
                    f"killed by a signal from outside (exit code {code}): was its runner stopped?"
                )
            await self._finish(held, state, code, message)
            return
        if held.cancel_first is not None:
            if time.monotonic() - held.cancel_first > CANCEL_GIVE_UP:
                await self._finish(
                    held, JobState.INTERRUPTED, None, "cancelled, but the runner did not stop it"
                )
            return
        wanted = JobState.RUNNING if status.state is RunState.RUNNING else JobState.QUEUED
        if held.state is not wanted and not (
            wanted is JobState.QUEUED and held.state is JobState.RUNNING
        ):
            fields: dict[str, Any] = {}
            if wanted is JobState.RUNNING and held.started_at is None:
                held.started_at = utcnow()
                fields["started_at"] = held.started_at
            await self._move(held, wanted, fields)
        if self._over_time(held):
            held.timed_out = True
            held.cancel_first = held.cancel_sent = time.monotonic()
            self._spawn(self._send_cancel(held))

    @staticmethod
    def _over_time(held: Held) -> bool:
        if held.timed_out or held.state is not JobState.RUNNING or held.started_at is None:
            return False
        limit = held.time_limit
        return bool(limit) and (utcnow() - held.started_at).total_seconds() > float(limit or 0)

    async def _finish(self, held: Held, state: JobState, code: int | None, message: str) -> None:
        workdir = job_dir(self.settings.jobs_dir, held.job_id)
        outputs: list[dict[str, str]] = []
        if held.service is not None and workdir.is_dir():
            found = await asyncio.to_thread(collect_outputs, held.service, workdir, held.staged)
            outputs = [o.to_json() for o in found]
        fields: dict[str, Any] = {"completed_at": utcnow(), "exit_code": code, "error": message or None,
                                  "outputs": outputs, "lease_owner": None, "lease_expires": None}  # fmt: skip
        if held.started_at is None and code is not None:
            fields["started_at"] = fields["completed_at"]
        sources = [s for s in sources_of(state) if s not in FINAL]
        if not await self.store.move_job(held.job_id, sources, state, fields, owner=self.owner):
            log.warning("job %s: could not record %s (no longer ours)", held.job_id, state)
        self.held.pop(held.job_id, None)
        await self.store.forget_leases(held.job_id)
        log.info("job %s %s%s", held.job_id, state, f": {message}" if message else "")

    async def _end(
        self, job_id: str, state: JobState, message: str, sources: Any = (JobState.ACCEPTED,)
    ) -> None:
        """End a job that never reached a runner (or cannot be followed)."""
        fields = {
            "completed_at": utcnow(),
            "error": message,
            "lease_owner": None,
            "lease_expires": None,
        }
        await self.store.move_job(job_id, list(sources), state, fields, owner=self.owner)
        await self.store.forget_leases(job_id)
        log.info("job %s %s: %s", job_id, state, message)

    # -- leases -----------------------------------------------------------------------------

    async def _renew_loop(self) -> None:
        interval = max(self.settings.lease_seconds / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            ids = [*self.held, *self.claimed]
            try:
                kept = await self.store.renew_leases(self.owner, ids, self.settings.lease_seconds)
                if kept < len(ids):
                    for job_id in [i for i in ids if i in self.held or i in self.claimed]:
                        job = await self.store.get_job(job_id)
                        if job is None or job.get("lease_owner") != self.owner:
                            log.warning("job %s was taken over by another scheduler", job_id)
                            self.held.pop(job_id, None)
                            self.claimed.discard(job_id)
            except StoreError as exc:
                log.warning("cannot renew leases: %s", exc)
