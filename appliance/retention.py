"""Deleting what has been kept long enough: finished jobs and old uploads.

A finished job older than ``job_retention`` loses its directory and its record; an upload
older than ``upload_retention`` loses its file and its record, unless a job that has not
finished yet takes it as input. Deletion is idempotent, so several schedulers may sweep.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from appliance.errors import RunnerError
from appliance.filerefs import inside
from appliance.runners.base import Backend
from appliance.settings import Settings
from appliance.store import Store, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Swept:
    jobs: int = 0
    uploads: int = 0


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _remove_file(path: Path) -> str | None:
    """Delete one file; the reason it could not be, if it could not."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        return str(exc)
    return None


async def sweep(store: Store, settings: Settings, now: datetime | None = None) -> Swept:
    now = now or utcnow()
    jobs = uploads = 0
    if settings.job_retention > 0:
        before = now - timedelta(seconds=settings.job_retention)
        while expired := await store.expired_jobs(before):
            for job_id in expired:
                await asyncio.to_thread(_remove_tree, settings.jobs_dir / job_id)
                await store.delete_job(job_id)
            jobs += len(expired)
    if settings.upload_retention > 0:
        before = now - timedelta(seconds=settings.upload_retention)
        in_use = await store.files_in_use()
        failed: list[str] = []
        for record in await store.expired_files(before, limit=100_000):
            file_id = str(record["_id"])
            if file_id in in_use:
                continue
            path = inside(settings.uploads_dir, str(record.get("path", file_id)))
            if path is not None and (problem := await asyncio.to_thread(_remove_file, path)):
                failed.append(problem)  # keep the record: the next sweep tries again
                continue
            await store.delete_file(file_id)
            uploads += 1
        if failed:
            log.warning("retention: %d expired uploads could not be deleted, e.g. %s",
                        len(failed), failed[0])  # fmt: skip
    if jobs or uploads:
        log.info("retention: deleted %d finished jobs and %d uploads", jobs, uploads)
    return Swept(jobs, uploads)


async def remove_orphans(store: Store, backends: dict[str, Backend]) -> None:
    """Ask each backend that can to remove what belongs to no active job (containers)."""
    active = await store.active_job_ids()
    for name, backend in backends.items():
        remover = getattr(backend, "remove_orphans", None)
        if remover is None:
            continue
        try:
            removed = await remover(active)
        except RunnerError as exc:
            log.warning("runner %s: cannot clean up: %s", name, exc)
            continue
        if removed:
            log.info("runner %s: removed %d leftover containers", name, len(removed))
