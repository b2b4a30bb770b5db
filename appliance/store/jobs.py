"""Job documents: recording, reading, listing, moving between states, cancel requests.

After submission a job has one writer at a time, the holder of its lease (see
``appliance.store.claims``); the web process records cancellation requests in their own
collection instead of writing the job.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import cast

from pymongo import DESCENDING

from appliance.errors import StoreError
from appliance.jobrecord import JobRecord
from appliance.states import FINAL, JobState
from appliance.store.connection import Connection, Doc
from appliance.store.formats import FORMAT

FINAL_NAMES = frozenset(str(s) for s in FINAL)
UNFINISHED_NAMES = frozenset(str(s) for s in JobState if s not in FINAL)


def _newest_first(job: Doc) -> tuple[float, str]:
    when = job.get("submitted_at")
    return (-when.timestamp() if isinstance(when, datetime) else math.inf, str(job["_id"]))


class Jobs(Connection):
    async def insert_job(self, job: JobRecord) -> None:
        """Record a new job (its ``_id`` made by the caller, so a retried insert is
        harmless). An ``ACCEPTED`` job is claimable by this write alone
        (``appliance.store.claims``): no message, entry or second write is needed."""
        document: JobRecord = {"lease_owner": None, "lease_expires": None, "lease_gen": 0,
                               "claims": 0, "format": FORMAT, **job}  # fmt: skip
        if not await self._insert_unique("insert job", "jobs", cast(Doc, document),
                                         retried_ok=True, together=self._job_inserts):  # fmt: skip
            raise StoreError(f"a job with id {job['_id']!r} exists already")

    async def count_unfinished(self, *, client: str | None = None, owner: str | None = None,
                               states: Sequence[str] = (), max_age: float = 0.0) -> int:  # fmt: skip
        """Jobs not yet final: of one client address, and/or in these states. ``max_age``:
        a count this process made at most that many seconds ago will do, with the jobs it
        accepted since (the quotas, checked on every submission; ``appliance.store.recent``)."""
        query: Doc = {"state": {"$in": sorted(states or UNFINISHED_NAMES)}}
        if client is not None:
            query["client"] = client
        if owner is not None:  # a TES client's tasks
            query["owner"] = owner
        key = ("unfinished", client or (owner and f"owner:{owner}"), tuple(sorted(states)))

        async def fetch() -> int:
            return await self._call("count unfinished jobs", lambda: self.count(self.jobs, query))

        return await self._recent.read(key, max_age, fetch)

    def accepted_job(self, client: str, states: Sequence[str]) -> None:
        """A job was just recorded for ``client`` (in one of ``states``): recent counts
        of unfinished jobs include it."""
        self._recent.add(1, ("unfinished", client, ()), ("unfinished", None, tuple(sorted(states))))

    async def unfinished_jobs(self, fields: Sequence[str] = ()) -> list[JobRecord]:
        """Every job not yet final (with only ``fields`` and ``_id``, if given)."""
        query = {"state": {"$in": sorted(UNFINISHED_NAMES)}}
        projection = dict.fromkeys(fields, 1) if fields else None

        async def run() -> list[JobRecord]:
            return cast(list[JobRecord], await self.jobs.find(query, projection).to_list(None))

        return await self._call("list unfinished jobs", run)

    async def get_job(self, job_id: str) -> JobRecord | None:
        found = await self._call("get job", lambda: self.jobs.find_one({"_id": job_id}))
        return cast(JobRecord | None, found)

    async def find_jobs(
        self,
        *,
        states: Sequence[str] = (),
        services: Sequence[str] = (),
        ids: Sequence[str] = (),
        submitted_after: datetime | None = None,
        submitted_before: datetime | None = None,
        skip: int = 0,
        limit: int = 100,
    ) -> tuple[int, list[JobRecord]]:
        """Jobs matching every given filter, newest first, and how many match in all."""
        query: Doc = {"kind": {"$ne": "task"}}  # TES tasks are listed by the TES API
        if states:
            query["state"] = {"$in": list(states)}
        if services:
            query["service"] = {"$in": list(services)}
        if ids:
            query["_id"] = {"$in": list(ids)}
        window: Doc = {}
        if submitted_after is not None:
            window["$gte"] = submitted_after
        if submitted_before is not None:
            window["$lt"] = submitted_before
        if window:
            query["submitted_at"] = window

        async def run() -> tuple[int, list[JobRecord]]:
            if limit <= 0:  # MongoDB reads a limit of 0 as "no limit"
                return await self.count(self.jobs, query), []
            cursor = self.jobs.find(query).sort("submitted_at", DESCENDING).skip(skip)
            total, page = await asyncio.gather(
                self.count(self.jobs, query), cursor.limit(limit).to_list(None)
            )
            return total, cast(list[JobRecord], page)

        async def one_read() -> tuple[int, list[JobRecord]]:
            """A server that uses no secondary index (FerretDB without the pushdown of
            ``tools/ferretdb-server``) reads every job for a
            count, and again for a sorted page, decoding each whole. Read once, only the
            sort key over the wire; sort here; fetch the page by ``_id`` (which it looks
            up by index). With 100,000 jobs: 14 s instead of 22 s (more than the database
            time limit, so the list failed with 503)."""
            keys = await self.jobs.find(query, {"submitted_at": 1}).to_list(None)
            keys.sort(key=_newest_first)
            chosen = [k["_id"] for k in keys[skip : skip + max(limit, 0)]]
            found = await asyncio.gather(*(self.jobs.find_one({"_id": i}) for i in chosen))
            return len(keys), cast(list[JobRecord], [job for job in found if job is not None])

        indexed = await self.uses_indexes()
        return await self._call("find jobs", run if indexed else one_read)

    async def find_tasks(
        self,
        owner: str,
        states: Sequence[str] | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[JobRecord]:
        """A client's TES tasks, newest first, from just after ``after`` (time, id)."""
        query: Doc = {"kind": "task", "owner": owner}
        if states:
            query["state"] = {"$in": list(states)}
        if after is not None:
            moment, last = after
            query["$or"] = [{"submitted_at": {"$lt": moment}},
                            {"submitted_at": moment, "_id": {"$lt": last}}]  # fmt: skip

        async def run() -> list[JobRecord]:
            cursor = self.jobs.find(query).sort([("submitted_at", DESCENDING), ("_id", DESCENDING)])
            return cast(list[JobRecord], await cursor.limit(limit).to_list(None))

        return await self._call("find tasks", run)

    async def move_job(
        self,
        job_id: str,
        sources: Iterable[JobState],
        new: JobState,
        fields: JobRecord | None = None,
        *,
        owner: str | None = None,
    ) -> bool:
        """Compare-and-set: move the job to ``new`` only if it is in one of ``sources``
        (and, with ``owner``, only if that owner holds it). True if it moved.

        A move that is sent again because the connection broke before its answer may
        have been applied the first time: then the job is found in ``new`` (still held
        by ``owner``), and that counts as moved.
        """
        query: Doc = {"_id": job_id, "state": {"$in": [str(s) for s in sources]}}
        if owner is not None:
            query["lease_owner"] = owner
        changes: JobRecord = {**(fields or {}), "state": str(new)}
        attempts = 0

        async def move() -> bool:
            nonlocal attempts
            attempts += 1
            result = await self.jobs.update_one(query, {"$set": changes})
            return result.modified_count == 1 or (
                attempts > 1 and await self._already(job_id, new, owner)
            )

        return await self._write(job_id, "update job", move)

    async def _already(self, job_id: str, new: JobState, owner: str | None) -> bool:
        job = await self.jobs.find_one({"_id": job_id}, {"state": 1, "lease_owner": 1})
        if job is None or job.get("state") != str(new):
            return False
        if new in FINAL:  # a final move also gives the lease up
            return True
        return owner is None or job.get("lease_owner") == owner

    async def note_waiting(self, job_id: str, waiting: Doc) -> None:
        """Say why a job nobody holds waits (only while it is ACCEPTED and unclaimed: a
        claim landing meanwhile writes its own reason)."""
        query = {"_id": job_id, "state": str(JobState.ACCEPTED), "lease_owner": None}
        await self._write(job_id, "say why a job waits", lambda: self.jobs.update_one(
            query, {"$set": {"waiting": waiting}}))  # fmt: skip

    async def update_job(self, job_id: str, fields: JobRecord) -> None:
        await self._write(job_id, "update job",
                          lambda: self.jobs.update_one({"_id": job_id}, {"$set": fields}))  # fmt: skip

    async def request_cancel(self, job_id: str) -> bool:
        """Ask for a job's end (idempotent); True if it ended here and then.

        A job no scheduler holds (ACCEPTED, and its lease free or expired) ends at once,
        INTERRUPTED, in one conditional update: it never starts, and no scheduler needs to
        look for cancel requests before each start. A claim that lands first makes that
        update miss; then the request is recorded for the holder, which stops the job."""
        at = await self.now()
        query: Doc = {"_id": job_id, "state": str(JobState.ACCEPTED),
                      "$or": [{"lease_owner": None}, {"lease_expires": {"$lt": at}}]}  # fmt: skip
        ended: JobRecord = {"state": str(JobState.INTERRUPTED), "completed_at": at,
                            "error": "cancelled before it started", "waiting": None,
                            "lease_owner": None, "lease_expires": None}  # fmt: skip
        result = await self._write(job_id, "cancel job", lambda: self.jobs.update_one(
            query, {"$set": ended}))  # fmt: skip
        if result.modified_count:
            return True
        await self._insert_unique("cancel job", "cancels", {"_id": job_id, "at": at})
        return False

    async def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        """Which of ``job_ids`` have a cancellation request (asked together with the
        concurrent callers' questions: a batch of starts makes one read, not one each)."""
        return await self._call("read cancellations",
                                lambda: self._cancel_reads.submit(list(job_ids)))  # fmt: skip

    async def delete_job(self, job_id: str) -> None:
        """Remove a job's record and everything kept about it (not its directory)."""
        for name in ("jobs", "cancels"):
            await self._call("delete job",
                             lambda n=name: self.collection(n).delete_one({"_id": job_id}))  # type: ignore[misc]  # fmt: skip
