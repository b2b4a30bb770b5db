"""Copying the outputs of jobs answered at submission (``appliance.reusing``) into their
own directories: the web process records such a job COMPLETED with ``files_of``, the
earlier job whose files it serves meanwhile, and an entry in ``Store.copies``; a
scheduler takes the entry, copies the outputs (regular files only, off the event loop),
and the job's files are its own from then on. Checked every ``POLL`` seconds, so a
job's files are usually its own a second after it was recorded."""

from __future__ import annotations

import logging
from datetime import timedelta

from appliance.errors import FilesUnansweredError
from appliance.jobdirs import make_job_dir
from appliance.jobrecord import OutputRecord
from appliance.offloop import FileWork
from appliance.plan import job_location
from appliance.scheduler.reuse import copy_outputs
from appliance.scheduler.rounds import every
from appliance.store import Doc, Store
from appliance.volumes import Volumes

log = logging.getLogger(__name__)
POLL = 1.0
LEASE = timedelta(minutes=2)  # a copy not done by then is taken again


def copy_into(source: Volumes, job_id: str, earlier_id: str, outputs: list[OutputRecord]) -> bool:
    target = source.path(job_location(job_id))
    make_job_dir(target)
    return copy_outputs(source.path(job_location(earlier_id)), target, outputs)


class OutputCopies:
    def __init__(self, store: Store, volumes: Volumes, files: FileWork, poll: float = POLL) -> None:
        self.store = store
        self.volumes = volumes
        self.files = files
        self.poll = poll

    async def run(self) -> None:
        await every(lambda: self.poll, "reused outputs", self.round, log)

    async def round(self) -> int:
        """Copy what is due; how many jobs got their files."""
        now = await self.store.now()
        done = 0
        for entry in await self.store.copies.due(now):
            if await self.store.copies.take(entry, now + LEASE) and await self._copy(entry):
                done += 1
        return done

    async def _copy(self, entry: Doc) -> bool:
        job_id, earlier_id = str(entry["_id"]), str(entry["from"])
        job = await self.store.get_job(job_id)
        if job is None:  # never recorded (the web failed after the entry), or deleted
            if await self.store.now() - entry["created_at"] > LEASE:
                await self.store.copies.done(job_id)
            return False
        outputs = list(job.get("outputs") or [])
        try:
            copied = await self.files.call("copy reused outputs", copy_into, self.volumes,
                                           job_id, earlier_id, outputs)  # fmt: skip
        except (OSError, FilesUnansweredError) as exc:
            log.warning("job %s: outputs of job %s not copied yet: %s", job_id, earlier_id, exc)
            return False
        if not copied:  # the earlier job's files are gone: it keeps pointing at them
            log.warning("job %s: outputs of job %s are gone; not copied", job_id, earlier_id)
        await self.store.copies.done(job_id)
        return copied
