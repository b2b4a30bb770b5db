"""Answering a new job at submission from an earlier identical one: the web process's
half of reuse (the scheduler's is ``appliance.scheduler.reuse``, for what this one
cannot answer).

The job's key is made as the scheduler makes it (``appliance.reusekey``), with the
images' content ids that a scheduler published and checked within the last seconds
(``Store.images``; none fresh: no answer here). An earlier job that completed with that
key (``Store.results``, whose entries go when retention marks their job: so never one
about to be deleted) and whose outputs are all still regular files answers it: the new
job is recorded COMPLETED with ``reused_from`` and the earlier job's outputs, served from
the earlier job's directory (``files_of``) until a scheduler has copied them into its
own (``Store.copies``, ``appliance.scheduler.copying``). No container starts, and the
answer costs a submission one read by ``_id`` and one small insert more (the
images are read once a second at most).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path

from appliance import reusekey
from appliance.errors import StoreError
from appliance.filerefs import inside
from appliance.jobrecord import JobRecord, OutputRecord
from appliance.plan import Plan, job_location
from appliance.states import JobState
from appliance.store import Store
from appliance.volumes import Volumes

IMAGES_KEPT = 1.0  # seconds; added to how long a publication is trusted (Store.images)


def _all_there(workdir: Path, outputs: list[OutputRecord]) -> bool:
    """Whether every output is still a regular file, reached without a symlink."""
    return all(inside(workdir, str(o["path"])) is not None for o in outputs)


class Answers:
    """The web process's answers from earlier jobs; keeps what the images are for
    ``IMAGES_KEPT`` seconds, so that a burst of submissions reads them once."""

    def __init__(self, store: Store, volumes: Volumes) -> None:
        self.store = store
        self.volumes = volumes
        self._images: dict[tuple[str, tuple[str, ...]], tuple[float, list[str] | None]] = {}

    async def _trusted(
        self, runner: str, images: tuple[str, ...], now: datetime
    ) -> list[str] | None:
        kept = self._images.get((runner, images))
        if kept is not None and time.monotonic() - kept[0] < IMAGES_KEPT:
            return kept[1]
        found = await self.store.images.trusted(runner, list(images), now)
        if len(self._images) > 1000:  # bounded: services times runners, in practice
            self._images.clear()
        self._images[(runner, images)] = (time.monotonic(), found)
        return found

    async def answer(self, job: JobRecord, runner: str, plan: Plan) -> JobRecord | None:
        """The fields that record ``job`` as answered from an earlier identical job, or
        None (no fresh image ids, no earlier job, its files gone, or the database not
        answering: the job then goes to a scheduler as any other)."""
        if not reusekey.reusable(plan):
            return None
        try:
            now = await self.store.now()
            images = await self._trusted(runner, tuple(str(s.image) for s in plan.steps), now)
            if images is None:
                return None
            key = await asyncio.to_thread(reusekey.key, str(job["service"]), plan, images,
                                          self.volumes)  # fmt: skip
            earlier = await self.store.results.entry(key) if key else None
        except (StoreError, OSError):
            return None
        if earlier is None or "outputs" not in earlier:  # none, or recorded by an older release
            return None
        source, outputs = str(earlier["job"]), list(earlier["outputs"])
        workdir = self.volumes.path(job_location(source))
        if not await asyncio.to_thread(_all_there, workdir, outputs):
            return None
        return {"state": str(JobState.COMPLETED), "started_at": now, "completed_at": now,
                "exit_code": 0, "error": None, "outputs": outputs, "reused_from": source,
                "reuse_key": str(key), "files_of": source, "waiting": None}  # fmt: skip
