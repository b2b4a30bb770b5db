"""Queries of the housekeeping: expired records, what active jobs still read, marks.

Deleting is in two phases (``appliance.scheduler.retention``): an expired job or upload
that no active job reads is first marked: ``expiring_at`` on its record (from then on
nothing new may refer to it: the web process's file lookup refuses it) and an entry in
the small ``marks`` collection (so that the second phase reads no big collection); only
when the mark is older than a grace period, and the record is still unread, is it
deleted. A job submitted just before the mark is active by then, so what it reads is
kept.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from appliance.plan import Location, Plan, PlanError
from appliance.states import FINAL
from appliance.store.files import Files
from appliance.store.jobs import Jobs

KINDS = ("jobs", "files")


class Upkeep(Jobs, Files):
    def _records(self, kind: str) -> Any:
        if kind not in KINDS:
            raise ValueError(kind)
        return self.jobs if kind == "jobs" else self.files

    @staticmethod
    def _expired_query(kind: str, before: datetime, services: list[str] | None,
                       states: list[str] | None) -> dict[str, Any]:  # fmt: skip
        query: dict[str, Any] = {"expiring_at": None}
        if kind == "jobs":
            final = [str(s) for s in FINAL]
            chosen = [s for s in final if states is None or s in states]
            query.update(state={"$in": chosen}, completed_at={"$lt": before})
            if services is not None:
                query["service"] = {"$in": services}
        else:
            query["created_at"] = {"$lt": before}
        return query

    async def expired(
        self, kind: str, before: datetime, limit: int = 500, *,
        services: list[str] | None = None, states: list[str] | None = None,
    ) -> list[str]:  # fmt: skip
        """Ids of finished jobs (kind ``jobs``) or uploads (``files``) older than
        ``before`` and not marked yet; jobs of ``services`` and in ``states`` only (final
        states: others are never expired), when given."""
        query = self._expired_query(kind, before, services, states)
        records = self._records(kind)

        async def run() -> list[str]:
            cursor = records.find(query, {"_id": 1}).limit(limit)
            return [str(doc["_id"]) for doc in await cursor.to_list(None)]

        return await self._call(f"find expired {kind}", run)

    async def expired_jobs(
        self, before: datetime, *, services: list[str] | None = None,
        states: list[str] | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Every job ``expired`` would give, with its service and state (a purge's list)."""
        query = self._expired_query("jobs", before, services, states)

        async def run() -> list[dict[str, Any]]:
            cursor = self.jobs.find(query, {"_id": 1, "service": 1, "state": 1})
            return [dict(doc) for doc in await cursor.to_list(None)]

        return await self._call("find expired jobs", run)

    async def mark_expiring(self, kind: str, ids: list[str], at: datetime | None) -> None:
        """Mark (or, with ``at`` None, unmark) records as about to be deleted."""
        records = self._records(kind)
        for record_id in ids:
            mark = {"_id": f"{kind}:{record_id}"}

            async def change(i: str = record_id, m: dict[str, Any] = mark) -> None:
                await records.update_one({"_id": i}, {"$set": {"expiring_at": at}})
                if at is None:
                    await self.marks.delete_one(m)
                else:
                    await self.marks.replace_one(m, {**m, "kind": kind, "record": i, "at": at},
                                                 upsert=True)  # fmt: skip

            await self._call(f"mark {kind}", change, upsert=True)

    async def expiring(self, kind: str, before: datetime, limit: int = 500) -> list[str]:
        """Ids of records marked before ``before``."""

        async def run() -> list[str]:
            query = {"kind": kind, "at": {"$lt": before}}
            cursor = self.marks.find(query, {"record": 1}).limit(limit)
            return [str(doc["record"]) for doc in await cursor.to_list(None)]

        return await self._call(f"find expiring {kind}", run)

    async def unmark_deleted(self, kind: str, record_id: str) -> None:
        """Forget the mark of a record that is gone."""
        await self._call(
            "forget mark", lambda: self.marks.delete_one({"_id": f"{kind}:{record_id}"})
        )

    async def references(self) -> set[Location]:
        """Every location that a job not yet finished reads (its plan's inputs)."""
        used: set[Location] = set()
        for job in await self.unfinished_jobs(["plan"]):
            if not job.get("plan"):
                continue
            try:
                used.update(Plan.from_json(job["plan"]).sources())
            except PlanError:
                continue
        return used
