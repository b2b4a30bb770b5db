"""Turning file ids into files on disk, safely.

A file parameter may name an upload by its id, or an earlier job's output as
``<job id>/<path>``. Either way the result must be a regular file inside the uploads or
that job's directory: ``..``, absolute paths and symlinks that lead out are refused.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from appliance.forms import ID, FileRef
from appliance.jobrecord import files_dir
from appliance.plan import JOBS, UPLOADS, Location, PlanError
from appliance.safefs import is_plain
from appliance.store import Store


def inside(base: Path, relative: str) -> Path | None:
    """``base/relative``, if it is a regular file reached from ``base`` without any
    symlink (a job may have made one); else None."""
    if not relative or "\x00" in relative or relative.startswith("/") or "\\" in relative:
        return None
    parts = PurePosixPath(relative).parts
    if any(part in ("..", ".") for part in parts) or not is_plain(base, relative):
        return None
    return base / relative


class StoreFileLookup:
    """Resolves upload ids and ``job/path`` output ids through the store."""

    def __init__(self, store: Store, uploads_dir: Path, jobs_dir: Path) -> None:
        self.store = store
        self.uploads_dir = uploads_dir
        self.jobs_dir = jobs_dir

    async def __call__(self, file_id: str) -> FileRef | None:
        if "/" in file_id:
            job_id, _, relative = file_id.partition("/")
            return await self._output(job_id, relative)
        if not ID.match(file_id):
            return None
        record = await self.store.get_file(file_id)
        if record is None or record.get("expiring_at") is not None:  # about to be deleted
            return None
        relative = str(record.get("path", file_id))
        path = inside(self.uploads_dir, relative)
        if path is None:
            return None
        try:
            location = Location(UPLOADS, relative)
        except PlanError:
            return None
        return FileRef(file_id, path, str(record.get("label", "")),
                       str(record.get("media_type", "")), location)  # fmt: skip

    async def _output(self, job_id: str, relative: str) -> FileRef | None:
        if not ID.match(job_id):
            return None
        job = await self.store.get_job(job_id)
        if job is None or job.get("expiring_at") is not None:  # about to be deleted
            return None
        recorded = {str(o.get("path")): o for o in job.get("outputs") or ()}
        output = recorded.get(relative)
        if output is None:
            return None
        path = inside(self.jobs_dir / files_dir(job), relative)
        if path is None:
            return None
        try:
            location = Location(JOBS, f"{files_dir(job)}/{relative}")
        except PlanError:
            return None
        return FileRef(f"{job_id}/{relative}", path, PurePosixPath(relative).name,
                       str(output.get("media_type", "")), location)  # fmt: skip
