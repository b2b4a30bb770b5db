"""Results that identical jobs may reuse: the ``results`` collection (``Store.results``).

One document per reuse key (``appliance.reusekey``): the key as ``_id``, the job that
completed with it and that job's outputs (so that an answer at submission reads one
document). Looked up by ``_id`` only, which every server serves from its primary index,
so reuse costs no index on the jobs collection. Entries of jobs that retention marks
are forgotten then (``forget_jobs``), before the jobs may go; an entry whose job no
longer answers is forgotten when it is found so.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from appliance.jobrecord import OutputRecord
from appliance.store.connection import Connection, Doc


class Results:
    def __init__(self, connection: Connection) -> None:
        self.db = connection

    def _results(self) -> Any:
        return self.db.collection("results")

    async def find(self, key: str) -> str | None:
        """The job that completed with ``key``, if one did."""
        found = await self.entry(key)
        return str(found["job"]) if found else None

    async def entry(self, key: str) -> Doc | None:
        """``{job, outputs}`` of the job that completed with ``key``, if one did."""
        found: Doc | None = await self.db._call(
            "read a result", lambda: self._results().find_one({"_id": key}))  # fmt: skip
        return found

    async def record(self, key: str, job_id: str, now: datetime,
                     outputs: Sequence[OutputRecord]) -> None:  # fmt: skip
        """``job_id`` completed with ``key`` and these outputs (the first one recorded
        stays)."""
        entry = {"_id": key, "job": job_id, "at": now, "outputs": list(outputs)}
        await self.db._insert_unique("record a result", "results", entry, retried_ok=True)

    async def forget_jobs(self, job_ids: Sequence[str]) -> None:
        """Forget the entries of these jobs (marked for deletion: nothing new may use them)."""
        if job_ids:
            await self.db._call("forget results", lambda: self._results().delete_many(
                {"job": {"$in": list(job_ids)}}))  # fmt: skip

    async def forget(self, key: str, job_id: str) -> None:
        """Forget ``key``'s entry if it still names ``job_id`` (gone, or not reusable)."""
        await self.db._call("forget a result", lambda: self._results().delete_one(
            {"_id": key, "job": job_id}))  # fmt: skip
