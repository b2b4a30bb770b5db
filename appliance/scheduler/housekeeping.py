"""Housekeeping: the scheduler's slow chores, in a task of their own on their own cadence,
so that none of them ever delays starting or following a job.

Every round (every ``HOUSEKEEPING_SECONDS``, the first soon after start):
- leftovers of backends that leave things behind (containers of jobs no longer active);
- accepted jobs whose runner no live scheduler runs end in ERROR with the reason, after
  waiting as long as an unreachable runner may (``submit_retry_seconds``).
In the first round and then every few:
- every ``RETENTION_EVERY``, retention of finished jobs and old uploads
  (``appliance.scheduler.retention``; retention counts in days);
- every ``LEFTOVER_EVERY``, a look for job directories left without a record.
A chore that fails is logged and tried again next time; the others still run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import appliance.scheduler.retention as retention
from appliance.errors import RunnerError
from appliance.runners.base import OrphanRemover
from appliance.scheduler.base import Base, log
from appliance.scheduler.rounds import guarded
from appliance.states import JobState
from appliance.waiting import same, waiting

HOUSEKEEPING_SECONDS = 60.0
FIRST_ROUND = 2.0  # seconds after start
RETENTION_EVERY = 10  # rounds between retention sweeps
LEFTOVER_EVERY = 60  # rounds between looks for job directories left without a record


class Housekeeping:
    def __init__(self, scheduler: Base, interval: float = HOUSEKEEPING_SECONDS) -> None:
        self.scheduler = scheduler
        self.interval = interval
        self.rounds = 0
        self.last_round_seconds = 0.0

    async def run(self) -> None:
        await asyncio.sleep(min(FIRST_ROUND, self.interval))
        while True:
            started = time.monotonic()
            await self.round()
            self.last_round_seconds = time.monotonic() - started
            await asyncio.sleep(max(self.interval - self.last_round_seconds, 0.0))

    async def round(self) -> None:
        self.rounds += 1
        chores: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("leftover runs", self.remove_orphans),
            ("unserved jobs", self.end_unserved),
        ]
        if self.rounds % RETENTION_EVERY == 1:
            chores.append(("retention", self.retention))
        for name, chore in chores:  # one failing does not stop the others
            await guarded(f"housekeeping ({name})", chore, log)

    async def remove_orphans(self) -> None:
        scheduler = self.scheduler
        active: set[str] | None = None
        for name, backend in scheduler.backends.items():
            if not isinstance(backend, OrphanRemover):
                continue
            if active is None:
                active = {str(job["_id"]) for job in await scheduler.store.unfinished_jobs(["_id"])}
            try:
                removed = await backend.remove_orphans(active)
            except RunnerError as exc:
                log.warning("runner %s: cannot clean up: %s", name, exc)
                continue
            if removed:
                log.info("runner %s: removed %d leftover runs", name, len(removed))

    async def retention(self) -> None:
        scheduler = self.scheduler
        await retention.sweep(scheduler.store, scheduler.settings)
        if self.rounds % LEFTOVER_EVERY == 1:
            now = await scheduler.store.now()
            await retention.remove_leftover_dirs(scheduler.store, scheduler.settings, now)

    async def end_unserved(self) -> None:
        """End accepted jobs whose runner no scheduler runs (they would wait for ever),
        and any stored without a runner (no scheduler ever claims those)."""
        scheduler = self.scheduler
        store = scheduler.store
        lease = scheduler.settings.lease_seconds
        live = await store.claims.live_runners(within=3 * lease) | set(scheduler.runners)
        now = await store.now()
        fields = ["state", "runner", "submitted_at", "waiting"]
        for job in await store.unfinished_jobs(fields):
            runner = job.get("runner")
            if job.get("state") != str(JobState.ACCEPTED) or runner in live:
                continue
            waited = (now - job["submitted_at"]).total_seconds()
            if runner is not None and waited < scheduler.submit_retry_seconds:
                ends = job["submitted_at"] + timedelta(seconds=scheduler.submit_retry_seconds)
                words = (f"no running scheduler runs its runner {runner!r}: it ends in ERROR "
                         f"at {ends:%Y-%m-%d %H:%M:%S} UTC unless one starts")  # fmt: skip
                if not same(job.get("waiting"), "no-scheduler", words):
                    await store.note_waiting(str(job["_id"]), waiting("no-scheduler", now, words))
                continue
            job_id = str(job["_id"])
            if await store.claims.claim_by_id(scheduler.owner, job_id, [JobState.ACCEPTED], lease):
                reason = (f"no scheduler runs its runner {runner!r} (it waited {waited:.0f} s): "
                          "start a scheduler with that runner, or give the service another"
                          if runner is not None else
                          "it was stored without a runner: submit it again")  # fmt: skip
                await scheduler._end(job_id, JobState.ERROR, reason)
