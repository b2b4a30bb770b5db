"""Outputs still to be copied into jobs answered at submission: the ``copies`` collection
(``Store.copies``).

A job that the web process answers from an earlier identical one (``appliance.reusing``)
is recorded COMPLETED with ``files_of``: the earlier job, whose directory holds its
outputs until a scheduler has copied them into its own (the web process never writes
the jobs volume). The entry here is written before the job, as a webhook's notice is:
a recorded job with ``files_of`` always has one until its copy is done, and retention
keeps the earlier job while an entry names it. A scheduler takes an entry by one
conditional update (``until``, a lease), copies, removes ``files_of`` from the job, and
deletes the entry; one that dies in between leaves it to be taken again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from appliance.store.connection import Connection, Doc

BATCH = 50


class Copies:
    def __init__(self, connection: Connection) -> None:
        self.db = connection

    def _copies(self) -> Any:
        return self.db.collection("copies")

    async def add(self, job_id: str, source: str, now: datetime) -> None:
        """The outputs of job ``source`` are to be copied into job ``job_id`` (about to
        be recorded)."""
        entry = {"_id": job_id, "from": source, "created_at": now, "until": now}
        await self.db._insert_unique("add a copy", "copies", entry, retried_ok=True)

    async def due(self, now: datetime) -> list[Doc]:
        async def find() -> list[Doc]:
            return [c async for c in self._copies().find({"until": {"$lte": now}}).limit(BATCH)]

        return await self.db._call("read due copies", find)

    async def take(self, entry: Doc, until: datetime) -> bool:
        """Take ``entry`` until ``until``; False if another scheduler took it first."""
        result = await self.db._call("take a copy", lambda: self._copies().update_one(
            {"_id": entry["_id"], "until": entry["until"]}, {"$set": {"until": until}}))  # fmt: skip
        return bool(result.modified_count)

    async def done(self, job_id: str) -> None:
        """The job's outputs are its own now: ``files_of`` goes, then the entry."""
        await self.db._call("record a copy", lambda: self.db.jobs.update_one(
            {"_id": job_id}, {"$unset": {"files_of": ""}}))  # fmt: skip
        await self.db._call("delete a copy", lambda: self._copies().delete_one({"_id": job_id}))

    async def sources(self) -> set[str]:
        """The jobs whose outputs are still to be copied (retention keeps them)."""

        async def find() -> set[str]:
            return {str(c["from"]) async for c in self._copies().find({}, {"from": 1})}

        return await self.db._call("read copies' sources", find)
