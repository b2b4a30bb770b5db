"""Taking work: claiming accepted jobs of this scheduler's runners, starting their first
step, and adopting in-flight jobs whose scheduler died."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, timedelta
from pathlib import Path

from appliance import metrics, reusekey
from appliance.errors import (
    FilesUnansweredError,
    RunnerError,
    RunnerFaultError,
    RunnerUnavailableError,
    StoreError,
)
from appliance.jobdirs import make_job_dir, prepare_step
from appliance.jobrecord import JobRecord
from appliance.plan import Plan, PlanError, job_location
from appliance.runners.base import Adopting, StepRun
from appliance.scheduler import reuse
from appliance.scheduler.base import IN_FLIGHT, STAGINGS_PER_CLIENT, Base, log
from appliance.scheduler.held import Held
from appliance.states import JobState
from appliance.tes.transfer import StagingError, stage_in
from appliance.waiting import waiting

NO_PLAN = "it was stored without a valid run plan ({}); submit it again"


def submitted_timestamp(job: JobRecord) -> float:
    """The job's submission time as unix seconds (0 when the record has none)."""
    at = job.get("submitted_at")
    if at is None:
        return 0.0
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def stored_plan(job: JobRecord) -> Plan | str:
    """The job's plan, or why it has none usable."""
    try:
        return Plan.from_json(job.get("plan"))
    except PlanError as exc:
        return NO_PLAN.format(exc)


class Starting(Base):
    async def dispatch(self) -> None:
        """Start every claimable accepted job, and adopt in-flight jobs whose holder died."""
        lease = self.settings.lease_seconds
        while True:
            await self.starting.acquire()
            with metrics.CLAIM_SECONDS.time():
                starting = waiting("starting", self.store.now_cached())
                job = await self.store.claims.claim(self.owner, [JobState.ACCEPTED], lease,
                                                    runners=self.runners,
                                                    setting={"waiting": starting})  # fmt: skip
            if job is None:
                self.starting.release()
                break
            if self._ours(job):
                self.starting.release()
                continue
            self.progress.completed("dispatch")  # a claim is progress too (long batches)
            job_id = str(job["_id"])
            self.claimed.add(job_id)
            task = asyncio.create_task(self._start(job))
            self.start_tasks[task] = job_id
            task.add_done_callback(self._started)
        if time.monotonic() < self.next_adoption:  # a dead holder's jobs wait for the lease
            return  # to run out: looking a few times a lease is enough, not at every wake-up
        self.next_adoption = time.monotonic() + lease / 4
        while (job := await self.store.claims.claim(self.owner, IN_FLIGHT, lease,
                                                    runners=self.runners)) is not None:  # fmt: skip
            if not self._ours(job):
                await self._adopt(job)

    def _ours(self, job: JobRecord) -> bool:
        """A job this process already works on, whose lease ran out (a database outage
        stalled the renewals): the claim renewed it; it must not be started twice."""
        job_id = str(job["_id"])
        if job_id in self.claimed or job_id in self.held:
            log.info("job %s: lease renewed after it ran out", job_id)
            return True
        return False

    def _started(self, task: asyncio.Task[None]) -> None:
        job_id = self.start_tasks.pop(task, None)
        if job_id is not None:
            self.claimed.discard(job_id)
        if task in self.slot_lent:  # it ended while its slot was lent: not held, not released
            self.slot_lent.discard(task)
        else:
            self.starting.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("starting a job failed", exc_info=task.exception())

    async def _start(self, job: JobRecord) -> None:
        job_id = str(job["_id"])
        plan = stored_plan(job)
        runner = str(job.get("runner"))
        backend = self.backends.get(runner)
        step = int(job.get("step") or 0)
        workdir = None if isinstance(plan, str) or backend is None else self.volumes.path(plan.work)

        async def prepare() -> OSError | FilesUnansweredError | None:
            if workdir is None or isinstance(plan, str):
                return None
            try:
                await self.files.call("make the job's directory", make_step_dir, workdir, plan,
                                      step)  # fmt: skip
            except (OSError, FilesUnansweredError) as exc:
                return exc
            return None

        # A cancel asked before the claim ended the job then and there (Jobs.request_cancel);
        # one asked since is seen by the monitor, which stops the job.
        failed = await prepare()
        if isinstance(plan, str) or backend is None or workdir is None:
            reason = plan if isinstance(plan, str) else f"runner {runner!r} is not running here"
            await self._end(job_id, JobState.ERROR, reason)
            return
        if isinstance(failed, FilesUnansweredError):  # a hung file system: later, as for a runner
            await self._retry_later(job, runner, failed)
            return
        if failed is not None:
            await self._end(job_id, JobState.ERROR, f"cannot make the job's directory: {failed}")
            return
        if plan.stage_in and not await self._staged(job_id, plan, workdir,
                                                    str(job.get("owner") or "")):  # fmt: skip
            return
        reuse_key = ""
        if reuse.wanted(job, plan, step):
            reuse_key = await self._reuse_key(job, plan, backend) or ""
            if reuse_key and await self._answered_from_earlier(job, workdir, reuse_key):
                return
        run = StepRun(job_id, plan, step, str(job.get("service", "")), submitted_timestamp(job),
                      resumed=int(job.get("claims") or 0) > 1)  # fmt: skip
        try:
            handle = await backend.submit(run)
        except RunnerUnavailableError as exc:
            metrics.RUNNER_ERRORS.labels(runner).inc()
            await self._retry_later(job, runner, exc)
            return
        except RunnerError as exc:
            metrics.RUNNER_ERRORS.labels(runner).inc()
            await self._end(job_id, JobState.ERROR, str(exc))
            return
        except Exception as exc:  # a fault the backend did not translate (a bug, an OSError):
            # never a silent loop; the job waits saying so, is tried again, then ends in ERROR
            metrics.RUNNER_ERRORS.labels(runner).inc()
            log.exception("job %s: runner %r failed unexpectedly", job_id, runner)
            failure = f"it failed unexpectedly: {exc.__class__.__name__}: {exc}"
            await self._retry_later(job, runner, RunnerFaultError(failure))
            return
        now = await self.store.now()
        queued = waiting("queued", now, f"submitted to runner {runner}, waiting for it to start")
        fields: JobRecord = {"backend": self.catalogue.runners[runner].backend
                             if runner in self.catalogue.runners else "", "handle": handle,
                             "step": step, "queued_at": now, "waiting": queued}  # fmt: skip
        if reuse_key:
            fields["reuse_key"] = reuse_key  # recorded for the next one when it completes
        if await self.store.move_job(
            job_id, [JobState.ACCEPTED], JobState.QUEUED, fields, owner=self.owner
        ):
            service = str(job.get("service", ""))
            metrics.JOBS_STARTED.labels(service, runner).inc()
            metrics.WAIT_SECONDS.labels(service).observe(max(0.0, time.time() - run.submitted_at))
            self.held[job_id] = Held(job_id, plan, runner, handle, JobState.QUEUED,
                                     str(job.get("service", "")), step,
                                     submitted_at=run.submitted_at,
                                     request_id=str(job.get("request_id") or ""),
                                     owner=str(job.get("owner") or ""), waiting=queued,
                                     reuse_key=reuse_key)  # fmt: skip
            self._wake_monitor(runner)
        else:  # someone else holds it now (we were too slow): leave it to them
            log.warning("lost the lease of job %s while starting it", job_id)
            now_known = await self.store.get_job(job_id)
            if now_known is None or JobState(now_known["state"]).finished:
                # it ended meanwhile (a cancel of a job whose lease ran out): stop what was
                # just started; never a run another scheduler now holds (the same handle)
                await self._send_cancel(Held(job_id, plan, runner, handle, JobState.QUEUED))

    async def _reuse_key(self, job: JobRecord, plan: Plan, backend: object) -> str | None:
        """The job's reuse key (``appliance.scheduler.reuse``); None when it has none."""
        try:
            images = await reuse.image_ids(plan, backend)
            if images is None:
                return None
            await self.image_checks.seen(str(job.get("runner")), [str(s.image) for s in plan.steps],
                                         images)  # fmt: skip
            return await self.files.call("hash the job's inputs", reusekey.key,
                                         str(job.get("service", "")), plan, images, self.volumes)  # fmt: skip
        except (RunnerError, FilesUnansweredError, OSError, StoreError) as exc:
            log.warning("job %s: not looked up for reuse: %s", job["_id"], exc)
            return None

    async def _answered_from_earlier(self, job: JobRecord, workdir: Path, key: str) -> bool:
        """Whether an earlier job that completed with ``key`` answered this one (its
        outputs copied here, the job COMPLETED with ``reused_from``, nothing started)."""
        job_id = str(job["_id"])
        earlier_id = await self.store.results.find(key)
        if earlier_id is None or earlier_id == job_id:
            return False
        earlier = await self.store.get_job(earlier_id)
        outputs = list((earlier or {}).get("outputs") or [])
        copied = False
        if earlier is not None and earlier["state"] == JobState.COMPLETED.value:
            source = self.volumes.path(job_location(earlier_id))
            try:
                copied = await self.files.call("copy an earlier job's outputs",
                                               reuse.copy_outputs, source, workdir, outputs)  # fmt: skip
            except (OSError, FilesUnansweredError) as exc:
                log.warning("job %s: job %s's outputs not copied: %s", job_id, earlier_id, exc)
        if not copied:  # gone (retention), or not reusable any more: forgotten
            await self.store.results.forget(key, earlier_id)
            return False
        now = await self.store.now()
        fields: JobRecord = {"started_at": now, "completed_at": now, "exit_code": 0,
                             "error": None, "outputs": outputs, "reused_from": earlier_id,
                             "reuse_key": key, "lease_owner": None, "lease_expires": None,
                             "waiting": None}  # fmt: skip
        if await self.store.move_job(job_id, [JobState.ACCEPTED], JobState.COMPLETED, fields,
                                     owner=self.owner):  # fmt: skip
            metrics.JOBS_ENDED.labels(str(job.get("service", "")), str(job.get("runner")),
                                      JobState.COMPLETED.value).inc()  # fmt: skip
            log.info("job %s COMPLETED: answered from job %s, an identical run", job_id,
                     earlier_id)  # fmt: skip
        return True  # recorded, or no longer ours to start (cancelled meanwhile)

    async def _staged(self, job_id: str, plan: Plan, workdir: Path, owner: str) -> bool:
        """``_stage_in`` outside the start slots: staging (a big folder, a slow server) may
        take minutes, and the slots are for starting every other job meanwhile. Stagings
        have bounds of their own: overall, and per TES client."""
        task = asyncio.current_task()
        assert task is not None
        self.starting.release()
        self.slot_lent.add(task)
        try:
            per_client = self.client_stagings.setdefault(
                owner, asyncio.Semaphore(STAGINGS_PER_CLIENT))  # fmt: skip
            async with per_client, self.stagings:
                return await self._stage_in(job_id, plan, workdir, owner)
        finally:
            await self.starting.acquire()  # cancelled here: still lent, never released
            self.slot_lent.discard(task)

    async def _stage_in(self, job_id: str, plan: Plan, workdir: Path, owner: str) -> bool:
        """Fetch a task's inputs in before its first step; False if that failed (the job
        then ended in ERROR, the reason in its system logs)."""
        await self.store.update_job(job_id, {"staging": True, "waiting": waiting(
            "staging", await self.store.now())})  # fmt: skip
        try:
            try:
                await stage_in(plan, workdir, self.settings, owner)
            except StagingError:
                raise
            except Exception as exc:  # whatever it was, the task ends saying so: never a retry loop
                log.exception("job %s: staging failed unexpectedly", job_id)
                raise StagingError(f"staging failed: {exc.__class__.__name__}: {exc}") from None
        except StagingError as exc:
            await self.store.update_job(job_id, {"staging": False, "system_logs": [str(exc)]})
            await self._end(job_id, JobState.ERROR, f"staging the inputs failed: {exc}")
            return False
        await self.store.update_job(job_id, {"staging": False})
        return True

    async def _retry_later(self, job: JobRecord, runner: str, exc: RunnerUnavailableError) -> None:
        """The runner (or the jobs' file system) does not answer: the claim is given back
        and the job waits, saying why, until its lease's expiry (a back-off) passes."""
        job_id = str(job["_id"])
        now = await self.store.now()
        first = job.get("first_failure_at") or now
        waited = (now - first).total_seconds()
        if waited >= self.submit_retry_seconds:
            how = "kept failing" if isinstance(exc, RunnerFaultError) else "was unreachable"
            reason = f"runner {runner!r} {how} for {waited:.0f} s: {exc}"
            await self._end(job_id, JobState.ERROR, reason)
            return
        attempts = int(job.get("attempts") or 0) + 1
        delay = min(2.0**attempts * 0.5, 30.0)
        log.warning("job %s: %s; trying again in %.1f s", job_id, exc, delay)
        # The lease's expiry doubles as the back-off timer: nobody takes the job before it.
        reason = "files" if isinstance(exc, FilesUnansweredError) else "runner"
        await self.store.update_job(job_id, {
            "attempts": attempts, "first_failure_at": first, "error": str(exc),
            "lease_owner": None, "lease_expires": now + timedelta(seconds=delay),
            "waiting": waiting(reason, first, f"{exc} (tried {attempts} times; trying again)"),
        })  # fmt: skip

    async def _adopt(self, job: JobRecord) -> None:
        job_id = str(job["_id"])
        runner, handle = str(job.get("runner")), job.get("handle")
        plan = stored_plan(job)
        if runner not in self.backends or not handle or isinstance(plan, str):
            reason = (
                plan
                if isinstance(plan, str)
                else (f"its runner {runner!r} is not configured here; it cannot be followed")
            )
            await self._end(job_id, JobState.ERROR, reason, sources=IN_FLIGHT)
            return
        held = Held(job_id, plan, runner, str(handle), JobState(job["state"]),
                    str(job.get("service", "")), int(job.get("step") or 0),
                    list(job.get("steps") or []), started_at=job.get("started_at"),
                    submitted_at=submitted_timestamp(job),
                    request_id=str(job.get("request_id") or ""), owner=str(job.get("owner") or ""),
                    waiting=job.get("waiting"), adopted=True,
                    reuse_key=str(job.get("reuse_key") or ""))  # fmt: skip
        backend = self.backends[runner]
        if isinstance(backend, Adopting):
            backend.adopt(StepRun(job_id, plan, held.step, held.service, held.submitted_at))
        if held.state is JobState.CANCELLING:
            self._spawn(self._send_cancel(held))  # the earlier scheduler may not have sent it
            held.cancel_first = held.cancel_sent = time.monotonic()
        self.held[job_id] = held
        log.info("adopted job %s (%s) from an earlier scheduler", job_id, held.state)
        self._wake_monitor(runner)

    async def _send_cancel(self, held: Held) -> None:
        try:
            await self.backends[held.runner].cancel(held.handle)
        except RunnerError as exc:
            log.warning("cancelling job %s failed (will try again): %s", held.job_id, exc)


def make_step_dir(workdir: Path, plan: Plan, step: int) -> None:
    """The job's directory, with what the step needs staged in it (one trip to a thread)."""
    make_job_dir(workdir)
    prepare_step(workdir, plan, step)
