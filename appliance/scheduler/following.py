"""Following work: statuses in one batch per runner, cancellations, time limits, the next
step of a multi-step plan, and recording each job's end."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from appliance import metrics
from appliance.aio import wait_event
from appliance.errors import FilesUnansweredError, RunnerError, RunnerUnavailableError, StoreError
from appliance.exits import ExitRecord, job_end, read_exit_records
from appliance.jobdirs import FoundOutput, collect_outputs, directory_size, prepare_step
from appliance.jobrecord import JobRecord, OutputRecord, StepRecord
from appliance.plan import Plan
from appliance.runners.base import RunState, RunStatus, StepRun
from appliance.scheduler.base import log
from appliance.scheduler.held import Held
from appliance.scheduler.starting import Starting
from appliance.states import FINAL, JobState, sources_of
from appliance.tes.transfer import StagingError, stage_out
from appliance.waiting import same, waiting

UNKNOWN_AFTER = 30.0  # seconds a runner may be unreachable before its jobs show UNKNOWN
CANCEL_RESEND = 15.0
CANCEL_GIVE_UP = 60.0
CHANGE_WAIT = 10.0  # longest wait for a runner's change notice before asking again
# Cancel requests are looked up when a wake-up message says one came, and this often in
# case it was lost (or went to another scheduler); not in every status round: in a batch
# of docker jobs that was a third of the scheduler's database commands.
CANCELS_EVERY = 1.0


class Following(Starting):
    async def _monitor_loop(self) -> None:
        while True:
            now = time.monotonic()
            wait = min([self.due.get(r, 0.0) - now for r in self.backends] or [1.0])
            if wait > 0:
                self.poke.clear()
                await wait_event(self.poke, min(wait, 1.0))
            try:
                await self.monitor()
                self.progress.completed("monitor")
            except Exception as exc:  # a bug must not stop the scheduler following jobs
                log.warning("following jobs failed; trying again: %s", exc,
                            exc_info=not isinstance(exc, RunnerError | OSError))  # fmt: skip
                await asyncio.sleep(1.0)

    async def monitor(self, *, every_runner: bool = False) -> None:
        """One round: cancellations, then the status of the held jobs of every runner
        whose round is due, one batch per runner."""
        now = time.monotonic()
        due = [r for r in self.backends if every_runner or self.due.get(r, 0.0) <= now]
        for runner in due:
            self.due[runner] = now + self.poll_seconds[runner]
        if not self.held:
            return
        requested: set[str] | list[str] = []
        if now >= self.cancels_due:
            self.cancels_due = now + CANCELS_EVERY
            requested = await self.store.cancel_requested(list(self.held))
        for job_id in requested:
            held = self.held.get(job_id)
            if held is not None and (
                held.cancel_sent is None or now - held.cancel_sent > CANCEL_RESEND
            ):
                await self._cancel(held)
        by_runner: dict[str, list[Held]] = {}
        for held in list(self.held.values()):
            if held.runner in due:
                by_runner.setdefault(held.runner, []).append(held)
        for runner, group in by_runner.items():
            try:
                statuses = await self.backends[runner].status([h.handle for h in group])
            except RunnerError as exc:
                metrics.RUNNER_ERRORS.labels(runner).inc()
                await self._unreachable(group, exc)
                continue
            for held in group:
                held.unreachable_since = None
                status = statuses.get(held.handle) or RunStatus(RunState.LOST)
                try:
                    await self._apply(held, status)
                except FilesUnansweredError as exc:  # its end is recorded at a later round
                    log.warning("job %s: %s; trying again", held.job_id, exc)

    async def _follow_changes(self, runner: str, backend: Any) -> None:
        """Ask for a runner's statuses as soon as it says a job started or ended; its
        polling stays as the fallback."""
        while True:
            try:
                await backend.changed(CHANGE_WAIT)
            except RunnerError:  # unreachable: the monitor reports it; look again later
                await asyncio.sleep(1.0)
                continue
            if self.held:
                self._wake_monitor(runner)

    async def _cancel(self, held: Held) -> None:
        now = time.monotonic()
        held.cancel_first = held.cancel_first or now
        held.cancel_sent = now
        if held.state is not JobState.CANCELLING:
            await self._move(held, JobState.CANCELLING)
        self._spawn(self._send_cancel(held))

    async def _unreachable(self, group: list[Held], exc: RunnerError) -> None:
        """A runner that does not answer: its jobs show UNKNOWN after a while, and end in
        ERROR with the reason after ``lost_after`` (their runs may be gone with it)."""
        now = time.monotonic()
        limit = self.settings.lost_after
        for held in group:
            held.unreachable_since = held.unreachable_since or now
            waited = now - held.unreachable_since
            if waited > limit:
                reason = f"its runner was unreachable for {waited:.0f} s: {exc}"
                await self._finish(held, JobState.ERROR, None, reason)
            elif waited > min(UNKNOWN_AFTER, limit / 2) and held.state is not JobState.UNKNOWN:
                held.waiting = waiting("runner", await self.store.now(), str(exc))
                await self._move(held, JobState.UNKNOWN, {"waiting": held.waiting})

    async def _apply(self, held: Held, status: RunStatus) -> None:
        if status.state is RunState.LOST:
            state, message = job_end(None, lost=status.message)
            await self._finish(held, state, None, message)
            return
        if status.state is RunState.FINISHED:
            await self._step_ended(held, status)
            return
        if held.cancel_first is not None:
            if time.monotonic() - held.cancel_first > CANCEL_GIVE_UP:
                await self._finish(held, JobState.INTERRUPTED, None,
                                   "cancelled, but the runner did not stop it")  # fmt: skip
            return
        wanted = JobState.RUNNING if status.state is RunState.RUNNING else JobState.QUEUED
        if held.state is not wanted and not (
            wanted is JobState.QUEUED and held.state is JobState.RUNNING
        ):
            fields: JobRecord = {}
            if wanted is JobState.RUNNING:
                fields["waiting"] = held.waiting = None
                if held.started_at is None:
                    held.started_at = await self.store.now()
                    fields["started_at"] = held.started_at
            elif status.reason and not same(held.waiting, status.reason, status.message):
                held.waiting = fields["waiting"] = waiting(status.reason, await self.store.now(),
                                                           status.message)  # fmt: skip
            await self._move(held, wanted, fields)
        elif (wanted is JobState.QUEUED and status.reason
              and not same(held.waiting, status.reason, status.message)):  # fmt: skip
            held.waiting = waiting(status.reason, await self.store.now(), status.message)
            await self.store.move_job(held.job_id, [held.state], held.state,
                                      {"waiting": held.waiting}, owner=self.owner)  # fmt: skip
        if self._over_time(held):
            held.timed_out = True
            held.cancel_first = held.cancel_sent = time.monotonic()
            self._spawn(self._send_cancel(held))

    def _over_time(self, held: Held) -> bool:
        if held.timed_out or held.state is not JobState.RUNNING or held.started_at is None:
            return False
        limit = held.time_limit
        if not limit:
            return False
        elapsed = self.store.now_cached() - held.started_at
        return elapsed.total_seconds() > float(limit)

    # -- the end of a step, and of a job ---------------------------------------------

    async def _step_ended(self, held: Held, status: RunStatus) -> None:
        record = status.record()
        assert record is not None
        if self.abilities[held.runner].runs_steps:  # the backend ran every step itself
            records = await self._step_records(held)
            held.steps = [self._step_record(held, i, r) for i, r in enumerate(records)]
            record = _deciding(held, records) or record
        else:
            now = await self.store.now()
            held.steps = [*held.steps[: held.step], self._step_record(held, held.step, record, now)]
            next_step = held.step + 1
            goes_on = record.code == 0 or not held.plan.steps[held.step].stop_on_failure
            if next_step < len(held.plan.steps) and goes_on:
                if held.cancel_first is None:
                    await self._next_step(held, next_step)
                    return
                record = ExitRecord(-signal.SIGTERM)  # stopped between steps
            elif goes_on:  # every step ran; failures allowed to go on do not fail the job
                record = ExitRecord(0)
        state, message = job_end(record, cancelled=held.cancelled, timed_out=held.timed_out,
                                 time_limit=held.time_limit)  # fmt: skip
        extra: JobRecord = {}
        if state is JobState.COMPLETED and held.plan.stage_out:
            try:
                extra["tes_outputs"] = await stage_out(held.plan, self.volumes.path(held.plan.work),
                                                       self.settings, held.owner)  # fmt: skip
            except StagingError as exc:
                state, message = JobState.ERROR, f"sending the outputs failed: {exc}"
                extra["system_logs"] = [str(exc)]
        await self._finish(held, state, record.code, message, extra)

    async def _step_records(self, held: Held) -> list[ExitRecord | None]:
        workdir = self.volumes.path(held.plan.work)
        wanted: list[tuple[Path | None, int]] = [(workdir, i) for i in range(len(held.plan.steps))]
        return await self.files.call("read exit records", read_exit_records, wanted)

    def _step_record(self, held: Held, index: int, record: ExitRecord | None,
                     at: Any = None) -> StepRecord:  # fmt: skip
        earlier = held.steps[index] if index < len(held.steps) else {}
        step: StepRecord = {**earlier, "handle": held.handle if index == held.step else "",
                            "exit_code": None if record is None else record.code,
                            "message": "" if record is None else record.message}  # fmt: skip
        if at is not None:
            step["completed_at"] = at
        return step

    async def _next_step(self, held: Held, index: int) -> None:
        """Submit the next step; if the runner cannot take it now, the next status round
        (which sees this step finished again) tries again, for a while."""
        # a job taken over: its earlier holder may have submitted this step already
        run = StepRun(held.job_id, held.plan, index, held.service, held.submitted_at,
                      resumed=held.adopted)  # fmt: skip
        try:
            await self.files.call("prepare a step", prepare_step,
                                  self.volumes.path(held.plan.work), held.plan, index)  # fmt: skip
        except FilesUnansweredError:
            raise
        except OSError as exc:
            await self._finish(held, JobState.ERROR, None, f"step {index + 1} cannot run: {exc}")
            return
        try:
            handle = await self.backends[held.runner].submit(run)
        except RunnerUnavailableError as exc:
            held.next_step_failing_since = held.next_step_failing_since or time.monotonic()
            if time.monotonic() - held.next_step_failing_since < self.submit_retry_seconds:
                log.warning("job %s: step %d waits for its runner: %s", held.job_id, index, exc)
                return
            await self._finish(
                held, JobState.ERROR, None, f"step {index + 1} could not start: {exc}"
            )
            return
        except RunnerError as exc:
            await self._finish(held, JobState.ERROR, None, f"step {index + 1} cannot run: {exc}")
            return
        held.next_step_failing_since = None
        held.step, held.handle = index, handle
        held.steps.append({"handle": handle, "started_at": await self.store.now()})
        fields: JobRecord = {"step": index, "handle": handle, "steps": held.steps}
        if not await self.store.move_job(held.job_id, [*sources_of(held.state), held.state],
                                         held.state, fields, owner=self.owner):  # fmt: skip
            log.warning("job %s: could not record step %d (no longer ours)", held.job_id, index)
            self.held.pop(held.job_id, None)
            return
        log.info("job %s: step %d of %d started", held.job_id, index + 1, len(held.plan.steps),
                 extra=held.log_fields)  # fmt: skip
        self._wake_monitor(held.runner)

    async def _finish(self, held: Held, state: JobState, code: int | None, message: str,
                      extra: JobRecord | None = None) -> None:  # fmt: skip
        workdir = self.volumes.path(held.plan.work)
        limit = self.settings.job_max_output_bytes
        over, found = await self.files.call("collect the outputs", _look_at_outputs,
                                            held.plan, workdir, limit)  # fmt: skip
        outputs: list[OutputRecord] = [o.to_json() for o in found]
        if over:  # the disk is everyone's: what is over the cap is not kept
            state = JobState.FAILED
            message = (f"the job wrote more than {limit} bytes into its directory (the "
                       "job_max_output_bytes setting); its files were deleted")  # fmt: skip
            await asyncio.to_thread(shutil.rmtree, workdir, True)
        elif state is JobState.FAILED:
            message = _with_stderr(message, held, outputs)
        now = await self.store.now()
        fields: JobRecord = {"completed_at": now, "exit_code": code, "error": message or None,
                             "outputs": outputs, "lease_owner": None, "lease_expires": None,
                             "waiting": None}  # fmt: skip
        if held.steps:
            fields["steps"] = held.steps
        fields.update(extra or {})
        # It ran (too briefly to be seen running), unless it was cancelled before it was
        # ever seen running: then it never started, and has no start time.
        if held.started_at is None and code is not None and state is not JobState.INTERRUPTED:
            fields["started_at"] = now
        sources = [s for s in sources_of(state) if s not in FINAL]
        if not await self.store.move_job(held.job_id, sources, state, fields, owner=self.owner):
            log.warning("job %s: could not record %s (no longer ours)", held.job_id, state)
        elif state is JobState.COMPLETED and held.reuse_key:  # identical jobs may reuse it
            with contextlib.suppress(StoreError):
                await self.store.results.record(held.reuse_key, held.job_id, now, outputs)
        self.held.pop(held.job_id, None)
        metrics.JOBS_ENDED.labels(held.service, held.runner, state.value).inc()
        if held.started_at is not None:
            metrics.RUN_SECONDS.labels(held.service).observe(
                max(0.0, (now - held.started_at).total_seconds()))  # fmt: skip
        log.info("job %s %s%s", held.job_id, state, f": {message}" if message else "",
                 extra=held.log_fields)  # fmt: skip


def _look_at_outputs(plan: Plan, workdir: Path, limit: int) -> tuple[bool, list[FoundOutput]]:
    """Whether the job wrote more than ``limit`` bytes (0: no limit); else its outputs."""
    if not workdir.is_dir():
        return False, []
    if limit and directory_size(workdir, limit) > limit:
        return True, []
    return False, collect_outputs(plan, workdir)


def _with_stderr(message: str, held: Held, outputs: list[OutputRecord]) -> str:
    """A failed job's reason, and where the tool said why: its stderr."""
    stderr = held.plan.steps[min(held.step, len(held.plan.steps) - 1)].stderr
    if not any(o["path"] == stderr for o in outputs):
        return message
    where = f"its stderr is the file {stderr} (/api/jobs/{held.job_id}/files/{stderr})"
    return f"{message}; {where}" if message else f"the tool failed: {where}"


def _deciding(held: Held, records: list[ExitRecord | None]) -> ExitRecord | None:
    """For a plan run whole by its backend: the record of the step that stopped it (or a
    success when every step ran); None if the records say nothing."""
    for index, record in enumerate(records):
        if record is None:
            return None
        if record.code != 0 and held.plan.steps[index].stop_on_failure:
            return record
    return ExitRecord(0)
