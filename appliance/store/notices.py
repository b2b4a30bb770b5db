"""Webhooks and e-mail still to be sent: the ``notices`` collection (``Store.notices``).

A job that names a webhook or an e-mail address gets a notice for each, written before
the job itself
(``appliance.submission.record``): so a job that exists and names a webhook always has
one, whatever happens to the process after. The collection holds only notices not yet
sent (a sent or given-up one is deleted and the job records how it went, in ``notify``),
so a scheduler reads a handful of documents per round, whatever the number of jobs.
A webhook's notice has the job's id as its own; an e-mail's is ``<job id>:email`` and
holds the job's id (``job``) and the address (``to``), which is kept nowhere else and
goes with the notice.

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
                 "completed_at": 1, "error": 1, "notify": 1, "notify_email": 1}  # fmt: skip
EMAIL = "email"  # the channel of an e-mail notice (a webhook's has none)


def job_of(notice: Doc) -> str:
    """The id of a notice's job."""
    return str(notice.get("job") or notice["_id"])


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

    async def add_email(self, job_id: str, to: str, now: datetime) -> None:
        """An e-mail notice for the job about to be recorded."""
        notice = {"_id": f"{job_id}:{EMAIL}", "job": job_id, "channel": EMAIL, "to": to,
                  "created_at": now, "next_at": now, "attempts": 0}  # fmt: skip
        await self.db._insert_unique("add an e-mail notice", "notices", notice, retried_ok=True)

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

    async def again(self, notice_id: str, attempts: int, at: datetime) -> None:
        await self.db._call("retry a notice", lambda: self._notices().update_one(
            {"_id": notice_id}, {"$set": {"attempts": attempts, "next_at": at}}))  # fmt: skip

    async def done(self, notice_id: str) -> None:
        await self.db._call("delete a notice",
                            lambda: self._notices().delete_one({"_id": notice_id}))  # fmt: skip

    async def record(self, job_id: str, notify: dict[str, Any], field: str = "notify") -> None:
        """What happened to the job's webhook (``notify``) or e-mail (``notify_email``)
        so far, on the job."""
        await self.db._call("record a notice", lambda: self.db.jobs.update_one(
            {"_id": job_id}, {"$set": {field: notify}}))  # fmt: skip

    async def pending(self) -> int:
        return int(await self.db._call("count notices",
                                       lambda: self._notices().count_documents({})))  # fmt: skip
