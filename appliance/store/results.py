"""Results that identical jobs may reuse: the ``results`` collection (``Store.results``).

One document per reuse key (``appliance.scheduler.reuse``): the key as ``_id``, the job
that completed with it. Looked up by ``_id`` only, which every server serves from its
primary index, so reuse costs no index on the jobs collection. An entry whose job is
gone (retention) or no longer answers is forgotten when it is found so.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from appliance.store.connection import Connection


class Results:
    def __init__(self, connection: Connection) -> None:
        self.db = connection

    def _results(self) -> Any:
        return self.db.collection("results")

    async def find(self, key: str) -> str | None:
        """The job that completed with ``key``, if one did."""
        found = await self.db._call("read a result", lambda: self._results().find_one({"_id": key}))
        return str(found["job"]) if found else None

    async def record(self, key: str, job_id: str, now: datetime) -> None:
        """``job_id`` completed with ``key`` (the first one recorded stays)."""
        await self.db._insert_unique("record a result", "results",
                                     {"_id": key, "job": job_id, "at": now}, retried_ok=True)  # fmt: skip

    async def forget(self, key: str, job_id: str) -> None:
        """Forget ``key``'s entry if it still names ``job_id`` (gone, or not reusable)."""
        await self.db._call("forget a result", lambda: self._results().delete_one(
            {"_id": key, "job": job_id}))  # fmt: skip
