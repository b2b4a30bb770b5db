"""Webhooks still to be sent: the ``notices`` collection (``Store.notices``).

A job that names a webhook gets a notice, written before the job itself
(``appliance.submission.record``): so a job that exists and names a webhook always has
one, whatever happens to the process after. The collection holds only notices not yet
sent (a sent or given-up one is deleted and the job records how it went, in ``notify``),
so a scheduler reads a handful of documents per round, whatever the number of jobs.

A scheduler takes a due notice by one conditional update (its ``next_at`` as it read
it, moved past the post's time limit): two schedulers that read the same notice cannot
both take it. A post that is sent but whose outcome is not recorded (the scheduler died
in between) is sent again when the notice is due again: at least once, never lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from appliance.jobrecord import JobRecord
from appliance.store.connection import Connection, Doc

NOTICE_FIELDS = {"_id": 1, "kind": 1, "service": 1, "state": 1, "submitted_at": 1,
                 "completed_at": 1, "error": 1, "notify": 1}  # fmt: skip


class Notices:
    def __init__(self, connection: Connection) -> None:
        self.db = connection

    def _notices(self) -> Any:
        return self.db.collection("notices")

    async def add(self, job_id: str, url: str, now: datetime) -> None:
        """A notice for the job about to be recorded (due at once: checked, then
        postponed, while the job runs)."""
        notice = {"_id": job_id, "url": url, "created_at": now, "next_at": now, "attempts": 0}
        await self.db._insert_unique("add a webhook notice", "notices", notice, retried_ok=True)

    async def due(self, now: datetime, limit: int) -> list[Doc]:
        async def find() -> list[Doc]:
            cursor = self._notices().find({"next_at": {"$lte": now}})
            return [n async for n in cursor.sort("next_at", 1).limit(limit)]

        return await self.db._call("read due notices", find)

    async def jobs(self, ids: Sequence[str]) -> dict[str, JobRecord]:
        """The jobs of these notices, by id (what a post says of them)."""

        async def find() -> dict[str, JobRecord]:
            cursor = self.db.jobs.find({"_id": {"$in": list(ids)}}, NOTICE_FIELDS)
            return {str(j["_id"]): cast(JobRecord, j) async for j in cursor}

        return await self.db._call("read notices' jobs", find)

    async def postpone(self, ids: Sequence[str], until: datetime) -> None:
        """Look at these (jobs still running) again at ``until``."""
        if ids:
            await self.db._call("postpone notices", lambda: self._notices().update_many(
                {"_id": {"$in": list(ids)}}, {"$set": {"next_at": until}}))  # fmt: skip

    async def take(self, notice: Doc, until: datetime) -> bool:
        """Take ``notice`` as read, for a post that ends before ``until``; False if
        another scheduler took it first."""
        result = await self.db._call("take a notice", lambda: self._notices().update_one(
            {"_id": notice["_id"], "next_at": notice["next_at"]}, {"$set": {"next_at": until}}))  # fmt: skip
        return bool(result.modified_count)

    async def again(self, job_id: str, attempts: int, at: datetime) -> None:
        await self.db._call("retry a notice", lambda: self._notices().update_one(
            {"_id": job_id}, {"$set": {"attempts": attempts, "next_at": at}}))  # fmt: skip

    async def done(self, job_id: str) -> None:
        await self.db._call("delete a notice",
                            lambda: self._notices().delete_one({"_id": job_id}))  # fmt: skip

    async def record(self, job_id: str, notify: dict[str, Any]) -> None:
        """What happened to the job's webhook so far, on the job (``notify``)."""
        await self.db._call("record a webhook", lambda: self.db.jobs.update_one(
            {"_id": job_id}, {"$set": {"notify": notify}}))  # fmt: skip

    async def pending(self) -> int:
        return int(await self.db._call("count notices",
                                       lambda: self._notices().count_documents({})))  # fmt: skip
