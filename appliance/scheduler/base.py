"""What every part of the scheduler shares: its state, and moving a held job's state."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any

from appliance import metrics
from appliance.catalogue import Catalogue
from appliance.jobrecord import JobRecord
from appliance.offloop import FileWork
from appliance.runners.base import Backend
from appliance.runners.registry import Abilities, abilities_of
from appliance.scheduler.held import Held
from appliance.scheduler.images import ImageChecks
from appliance.settings import Settings
from appliance.states import JobState, sources_of
from appliance.store import Store, new_id
from appliance.volumes import Volumes

log = logging.getLogger("appliance.scheduler")

IN_FLIGHT = (JobState.QUEUED, JobState.RUNNING, JobState.CANCELLING, JobState.UNKNOWN)
STAGINGS_AT_ONCE = 16  # tasks whose inputs one scheduler stages at once
STAGINGS_PER_CLIENT = 4  # of those, one TES client's


class Progress:
    """When the scheduler's loops last completed a round, for its heartbeat: a scheduler
    stuck in a database call or a runner call stops touching its heartbeat file."""

    def __init__(self, loops: Iterable[str]) -> None:
        self.done = dict.fromkeys(loops, time.monotonic())

    def completed(self, loop: str) -> None:
        self.done[loop] = time.monotonic()

    def fresh(self, within: float) -> bool:
        now = time.monotonic()
        return all(now - at <= within for at in self.done.values())


class Base:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        catalogue: Catalogue,
        backends: Mapping[str, Backend],
        *,
        owner: str | None = None,
        poll_seconds: float | None = None,
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
        self.volumes = Volumes.local(settings)
        self.abilities: dict[str, Abilities] = {}
        for runner in self.backends:
            config = catalogue.runners.get(runner)
            self.abilities[runner] = config.abilities if config else abilities_of("memory")
        # How often each runner is asked for statuses (its declaration, unless overridden).
        self.poll_seconds = {runner: poll_seconds or a.poll_seconds
                             for runner, a in self.abilities.items()}  # fmt: skip
        self.submit_retry_seconds = submit_retry_seconds
        self.listen = listen
        self.heartbeat = heartbeat
        self.held: dict[str, Held] = {}
        self.claimed: set[str] = set()  # being started: their leases are renewed too
        self.kick = asyncio.Event()  # dispatch: look for work now
        self.poke = asyncio.Event()  # monitor: ask runners for statuses now
        self.due: dict[str, float] = {}  # runner -> when its next status round is due
        self.cancels_due = 0.0  # when the monitor looks for cancel requests next
        self.starting = asyncio.Semaphore(concurrency)
        # Starts that lent their slot while a task's inputs are staged (appliance.tes),
        # within their own bounds: overall, and per TES client.
        self.slot_lent: set[asyncio.Task[Any]] = set()
        self.stagings = asyncio.Semaphore(STAGINGS_AT_ONCE)
        self.client_stagings: dict[str, asyncio.Semaphore] = {}
        self.next_adoption = 0.0  # when dispatch looks for jobs to adopt next
        self.start_tasks: dict[asyncio.Task[None], str] = {}  # -> the job being started
        self.side_tasks: set[asyncio.Task[None]] = set()
        self.progress = Progress(["dispatch", "monitor"])
        # Job directories and exit records, read and written off the event loop.
        self.files = FileWork(settings.file_timeout, name="scheduler-files")
        # What the runners' images are, published for reuse at submission.
        self.image_checks = ImageChecks(store, self.backends)

    @property
    def runners(self) -> list[str]:
        """The runners this scheduler runs: it claims and adopts their jobs only."""
        return list(self.backends)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.side_tasks.add(task)
        task.add_done_callback(self.side_tasks.discard)

    def _wake_monitor(self, runner: str | None = None) -> None:
        """Ask for statuses at once (of one runner's jobs, or of all)."""
        for name in [runner] if runner else list(self.backends):
            self.due[name] = 0.0
        self.poke.set()

    async def _move(self, held: Held, state: JobState, fields: JobRecord | None = None) -> bool:
        moved = await self.store.move_job(
            held.job_id, sources_of(state), state, fields, owner=self.owner
        )
        if moved:
            held.state = state
        return moved

    async def _end(self, job_id: str, state: JobState, message: str,
                   sources: Iterable[JobState] = (JobState.ACCEPTED,)) -> None:  # fmt: skip
        """End a job that never reached a runner (or cannot be followed)."""
        fields: JobRecord = {"completed_at": await self.store.now(), "error": message,
                             "lease_owner": None, "lease_expires": None, "waiting": None}  # fmt: skip
        await self.store.move_job(job_id, list(sources), state, fields, owner=self.owner)
        metrics.JOBS_ENDED.labels("", "", state.value).inc()  # it never reached a runner
        log.info("job %s %s: %s", job_id, state, message)
