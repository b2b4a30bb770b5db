"""Deleting what has been kept long enough: finished jobs and old uploads.

A finished job older than ``job_retention`` loses its record and then its directory; an
upload older than ``upload_retention`` loses its record and then its file. Nothing that
a job not yet finished reads (its plan's inputs: uploads, and earlier jobs' outputs) is
deleted, nor a job whose outputs are still to be copied into a job that reused them. Deleting is in two phases so that a job submitted while a sweep runs keeps what
it reads: an expired record is first marked (the web process then refuses to use it),
and deleted only once the mark is older than a grace period of at least one lease, if
no active job reads it by then. Deletion is idempotent, so several schedulers may sweep.
A job's record goes before its directory (never a record whose files are gone); a
directory left without a record (a sweep cut off in between) is removed later.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from appliance.exits import record_dir
from appliance.filerefs import inside
from appliance.plan import JOBS, UPLOADS, Location
from appliance.settings import Settings
from appliance.store import Store

log = logging.getLogger(__name__)

MIN_GRACE = 60.0  # seconds: at least a lease, and at least a housekeeping round
BATCH = 500
JOB_ID = re.compile(r"^[a-z2-7]{16}$")


@dataclass(frozen=True)
class Swept:
    jobs: int = 0
    uploads: int = 0
    marked: int = 0
    leftovers: int = 0


def jobs_read(reads: set[Location]) -> set[str]:
    """The jobs whose outputs an unfinished job reads (``Store.references``)."""
    return {loc.path.split("/", 1)[0] for loc in reads if loc.volume == JOBS}


def grace_of(settings: Settings) -> float:
    return max(settings.lease_seconds, MIN_GRACE)


def _remove_file(path: Path) -> str | None:
    """Delete one file; the reason it could not be, if it could not."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        return str(exc)
    return None


async def delete_job(store: Store, settings: Settings, job_id: str) -> str | None:
    """A marked job's record, then its directory (never a record without its files)."""
    await store.delete_job(job_id)
    await asyncio.to_thread(_remove_job_dir, settings.jobs_dir / job_id)
    await store.unmark_deleted("jobs", job_id)
    return None


async def sweep(
    store: Store, settings: Settings, now: datetime | None = None, *, grace: float | None = None
) -> Swept:
    now = now or await store.now()
    grace = grace_of(settings) if grace is None else grace
    reads = await store.references()
    read_jobs = jobs_read(reads) | await store.copies.sources()  # reused, not copied yet
    read_uploads = {loc.path for loc in reads if loc.volume == UPLOADS}

    async def remove_job(job_id: str) -> str | None:
        return await delete_job(store, settings, job_id)

    async def remove_upload(file_id: str) -> str | None:
        record = await store.get_file(file_id)
        if record is not None:
            path = inside(settings.uploads_dir, str(record.get("path", file_id)))
            if path is not None and (problem := await asyncio.to_thread(_remove_file, path)):
                return problem  # keep the record: the next sweep tries again
        await store.delete_file(file_id)
        await store.unmark_deleted("files", file_id)
        return None

    jobs = uploads = marked = 0
    marked_before = now - timedelta(seconds=grace)
    if settings.job_retention > 0:
        jobs = await delete_marked(store, "jobs", marked_before, read_jobs, remove_job)
        expired = now - timedelta(seconds=settings.job_retention)
        marked += await mark(store, "jobs", expired, read_jobs, now)
    if settings.upload_retention > 0:
        uploads = await delete_marked(store, "files", marked_before, read_uploads, remove_upload)
        expired = now - timedelta(seconds=settings.upload_retention)
        marked += await mark(store, "files", expired, read_uploads, now)
    if jobs or uploads:
        log.info("retention: deleted %d finished jobs and %d uploads", jobs, uploads)
    return Swept(jobs, uploads, marked)


async def mark(store: Store, kind: str, before: datetime, reads: set[str], now: datetime,
               **only: list[str] | None) -> int:  # fmt: skip
    """Mark expired records that nothing active reads (jobs: of the ``services`` and in
    the ``states`` given, if given); returns how many."""
    marked = 0
    while True:
        expired = await store.expired(kind, before, BATCH, **only)
        doomed = [i for i in expired if i not in reads]
        if not doomed:
            return marked
        await store.mark_expiring(kind, doomed, now)
        if kind == "jobs":  # no identical job may be answered from them from now on
            await store.results.forget_jobs(doomed)
        marked += len(doomed)


async def delete_marked(
    store: Store,
    kind: str,
    before: datetime,
    reads: set[str],
    remove: Callable[[str], Awaitable[str | None]],
) -> int:
    """Delete the records marked before ``before``, unless an active job reads them now:
    those are unmarked and kept."""
    deleted = 0
    failed: list[str] = []
    while batch := [i for i in await store.expiring(kind, before, BATCH) if i not in failed]:
        kept = [i for i in batch if i in reads]
        if kept:
            await store.mark_expiring(kind, kept, None)
        for record_id in batch:
            if record_id in kept:
                continue
            problem = await remove(record_id)
            if problem:
                failed.append(record_id)
                continue
            deleted += 1
    if failed:
        log.warning("retention: %d expired %s could not be deleted, e.g. %s", len(failed), kind,
                    failed[0])  # fmt: skip
    return deleted


def _remove_job_dir(workdir: Path) -> None:
    """A job's directory and its record folder beside it."""
    shutil.rmtree(workdir, ignore_errors=True)
    shutil.rmtree(record_dir(workdir), ignore_errors=True)


def _old_job_dirs(jobs_dir: Path, before: float) -> list[str]:
    names: list[str] = []
    if not jobs_dir.is_dir():
        return names
    with os.scandir(jobs_dir) as entries:
        for entry in entries:
            if (
                JOB_ID.match(entry.name)
                and entry.is_dir(follow_symlinks=False)
                and entry.stat(follow_symlinks=False).st_mtime < before
            ):
                names.append(entry.name)
    return names


async def remove_leftover_dirs(store: Store, settings: Settings, now: datetime) -> int:
    """Remove job directories that have no record, older than a record could be."""
    if settings.job_retention <= 0:
        return 0
    age = settings.job_retention + grace_of(settings) + 3600
    names = await asyncio.to_thread(_old_job_dirs, settings.jobs_dir, now.timestamp() - age)
    removed = 0
    for name in names:
        if await store.get_job(name) is None:
            await asyncio.to_thread(_remove_job_dir, settings.jobs_dir / name)
            removed += 1
    if removed:
        log.info("retention: removed %d job directories left without a record", removed)
    return removed
