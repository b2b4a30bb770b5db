"""The one module that talks to MongoDB: jobs, uploaded files and service health.

Every operation goes through ``Store._call``, which retries while the server is
unreachable (with back-off, up to ``retry_seconds``) and translates pymongo's errors
into StoreError / StoreUnavailableError.

Handing work over between processes relies on one guarantee only: inserting a document
whose ``_id`` exists fails. (MongoDB's findAndModify is atomic, but MongoDB-protocol
servers such as FerretDB implement it as a read followed by a write, and we test against
those too.) A claim inserts ``<job id>:<generation>`` into ``leases``: exactly one
process wins each generation, and only the winner then writes the job. After submission
a job document has one writer at a time, its lease holder; the web process records
cancellation requests in their own collection instead of writing the job.

The scheduler never searches ``jobs``, which grows with every job ever run: each job
not yet finished also has a small document in ``active`` (its state and lease expiry),
written just before the job's own and removed once the job is final. Scheduler queries
search ``active`` and then read each candidate job by ``_id``; the job document stays
the truth, and an ``active`` entry found out of date is corrected on the spot. (On
MongoDB the indexes would do, but MongoDB-protocol servers like FerretDB over SQLite
can only look documents up by ``_id``: anything else reads the whole collection.)
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError, PyMongoError

from appliance import indexes
from appliance.coalesce import Coalescer
from appliance.errors import StoreError, StoreUnavailableError
from appliance.states import FINAL, JobState

T = TypeVar("T")
Doc = dict[str, Any]

FINAL_NAMES = frozenset(str(s) for s in FINAL)
BULK_UPDATES = 50  # updates per bulk command (see renew_leases)
DUPLICATE_KEY = 11000


def new_id() -> str:
    """A random id that is safe in URLs and file names (16 characters, 80 bits)."""
    return base64.b32encode(os.urandom(10)).decode("ascii").lower()


def utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
    def __init__(
        self, uri: str, database: str, *, retry_seconds: float = 10.0, server_timeout_ms: int = 2000
    ) -> None:
        self.client: AsyncMongoClient[Doc] = AsyncMongoClient(
            uri,
            tz_aware=True,
            tzinfo=UTC,
            serverSelectionTimeoutMS=server_timeout_ms,
            connectTimeoutMS=server_timeout_ms,
            connect=False,
        )
        self.db = self.client[database]
        self.jobs = self.db["jobs"]
        self.files = self.db["files"]
        self.services = self.db["services"]
        self.leases = self.db["leases"]
        self.cancels = self.db["cancels"]
        self.active = self.db["active"]
        self.retry_seconds = retry_seconds
        self._job_writes = asyncio.Lock()
        # New jobs and upload records from concurrent requests go out together.
        self._job_inserts = Coalescer(partial(self._insert_many, self.jobs))
        self._file_inserts = Coalescer(partial(self._insert_many, self.files))

    async def close(self) -> None:
        await self.client.close()

    async def _call(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        while True:
            try:
                return await operation()
            except ConnectionFailure as exc:
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailableError(f"MongoDB is unreachable ({what}): {exc}") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            except PyMongoError as exc:
                raise StoreError(f"MongoDB refused {what}: {exc}") from None

    async def _write(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """Writes to job documents, one at a time in this process.

        MongoDB applies each update atomically, but MongoDB-protocol servers like FerretDB
        read, change and write back the whole document: two concurrent updates of one job
        from this process (a lease renewal and a state change) could undo each other.
        """
        async with self._job_writes:
            return await self._call(what, operation)

    async def _insert_unique(
        self,
        what: str,
        collection: Any,
        document: Doc,
        *,
        retried_ok: bool = False,
        together: Coalescer[Doc, bool] | None = None,
    ) -> bool:
        """Insert ``document``; False if its ``_id`` exists already.

        With ``retried_ok``, a duplicate found on a retry counts as success: the first
        attempt went through before the connection broke. With ``together``, it goes to
        the server with the documents other requests are inserting at the same moment.
        """
        attempts = 0

        async def insert() -> bool:
            nonlocal attempts
            attempts += 1
            if together is not None:
                inserted = await together.submit(document)
            else:
                inserted = (await self._insert_many(collection, [document]))[0]
            return inserted or (retried_ok and attempts > 1)

        return await self._call(what, insert)

    @staticmethod
    async def _insert_many(collection: Any, documents: list[Doc]) -> list[bool]:
        """Insert; for each document, True if inserted, False if its ``_id`` existed."""
        try:
            if len(documents) == 1:
                await collection.insert_one(documents[0])
            else:
                await collection.insert_many(documents, ordered=False)
        except DuplicateKeyError:
            return [False]
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != DUPLICATE_KEY for error in errors):
                raise
            duplicates = {int(error["index"]) for error in errors}
            return [i not in duplicates for i in range(len(documents))]
        return [True] * len(documents)

    # -- set-up and health -------------------------------------------------------------

    async def ping(self) -> None:
        await self._call("ping", lambda: self.db.command("ping"))

    async def secondary_indexes_help(self) -> bool:
        return await indexes.secondary_indexes_help(self)

    async def ensure_indexes(self) -> None:
        await indexes.ensure_indexes(self)

    async def drop_database(self) -> None:
        await self._call("drop", lambda: self.client.drop_database(self.db.name))

    # -- jobs --------------------------------------------------------------------------

    async def insert_job(self, job: Doc, *, with_entry: bool = True) -> None:
        """Record a new job (its ``_id`` made by the caller, so a retried insert is harmless).

        ``with_entry=False`` leaves its ``active`` entry to the scheduler, which makes it
        when the web process's wake-up message arrives (``add_entry_for``); a scheduler
        also makes every missing entry when it starts (``rebuild_active``). That saves
        the web process a write per submission: on FerretDB it nearly doubled submissions/s.
        """
        document = {"lease_owner": None, "lease_expires": None, "lease_gen": 0, "claims": 0, **job}
        if with_entry:  # first: a job without its entry would wait for a scheduler's start
            await self.add_entry(document)
        if not await self._insert_unique(
            "insert job", self.jobs, document, retried_ok=True, together=self._job_inserts
        ):
            raise StoreError(f"a job with id {job['_id']!r} exists already")

    async def add_entry(self, job: Doc) -> None:
        """Give an unfinished job its ``active`` entry (nothing if it has one)."""
        if job.get("state") in FINAL_NAMES:
            return
        entry = {"_id": job["_id"], "state": job["state"], "submitted_at": job["submitted_at"],
                 "lease_owner": job.get("lease_owner"), "lease_expires": job.get("lease_expires")}  # fmt: skip
        await self._insert_unique("add active entry", self.active, entry, retried_ok=True)

    async def add_entry_for(self, job_id: str) -> bool:
        """``add_entry`` for a job known by id; False if there is no such job."""
        job = await self.get_job(job_id)
        if job is None:
            return False
        await self.add_entry(job)
        return True

    async def get_job(self, job_id: str) -> Doc | None:
        return await self._call("get job", lambda: self.jobs.find_one({"_id": job_id}))

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
    ) -> tuple[int, list[Doc]]:
        """Jobs matching every given filter, newest first, and how many match in all."""
        query: Doc = {}
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

        async def run() -> tuple[int, list[Doc]]:
            if limit <= 0:  # MongoDB reads a limit of 0 as "no limit"
                return await self.jobs.count_documents(query), []
            cursor = self.jobs.find(query).sort("submitted_at", DESCENDING).skip(skip)
            # At once: where the server has no index to use (FerretDB), each one reads
            # the whole collection, and two cores read it in half the time.
            total, page = await asyncio.gather(
                self.jobs.count_documents(query), cursor.limit(limit).to_list(None)
            )
            return total, page

        return await self._call("find jobs", run)

    async def claim_job(
        self, owner: str, states: Iterable[JobState], lease_seconds: float, *, batch: int = 16
    ) -> Doc | None:
        """Take the oldest job in ``states`` whose lease is free or expired; None if none is.

        Two processes can never both take one job: each claim must insert the lease
        document of the job's next generation, and only one insert of an ``_id`` succeeds.
        """
        now = utcnow()
        wanted = [str(s) for s in states]
        query = {
            "state": {"$in": wanted},
            "$or": [{"lease_expires": None}, {"lease_expires": {"$lt": now}}],
        }

        async def candidates() -> list[Doc]:
            cursor = self.active.find(query).sort("submitted_at", ASCENDING).limit(batch)
            return await cursor.to_list(None)

        for entry in await self._call("find claimable jobs", candidates):
            job = await self.get_job(str(entry["_id"]))
            if job is None or not _claimable(job, wanted, now):
                await self._correct_entry(entry, job, now, lease_seconds)
                continue
            claimed = await self._claim_one(job, owner, wanted, now, lease_seconds)
            if claimed is not None:
                return claimed
        return None

    async def _correct_entry(
        self, entry: Doc, job: Doc | None, now: datetime, lease_seconds: float
    ) -> None:
        """Bring an out-of-date ``active`` entry in line with its job (or drop it)."""
        job_id = entry["_id"]
        if job is None:
            # The web process records the entry just before the job: give it time.
            if entry.get("submitted_at") and entry["submitted_at"] < now - timedelta(
                seconds=max(lease_seconds, 60)
            ):
                await self._call("drop entry", partial(self.active.delete_one, {"_id": job_id}))
            return
        await self._write("correct entry", partial(self._mirror, job_id, job))

    async def _mirror(self, job_id: str, fields: Doc) -> None:
        """Copy a job's state and lease to its ``active`` entry (call under the
        write lock, after writing the job)."""
        if "state" in fields and fields["state"] in FINAL_NAMES:
            await self.active.delete_one({"_id": job_id})
            return
        copy = {k: fields[k] for k in ("state", "lease_owner", "lease_expires") if k in fields}
        if copy:
            await self.active.update_one({"_id": job_id}, {"$set": copy})

    async def _claim_one(
        self, candidate: Doc, owner: str, states: list[str], now: datetime, lease_seconds: float
    ) -> Doc | None:
        job_id = str(candidate["_id"])
        generation = int(candidate.get("lease_gen") or 0) + 1
        # A claimant that inserted its lease but died before writing the job leaves that
        # generation taken for ever; once such a lease is older than a lease, skip past it.
        for _ in range(8):
            lease = {"_id": f"{job_id}:{generation}", "job_id": job_id, "owner": owner, "at": now}
            if await self._insert_unique("claim job", self.leases, lease):
                break
            taken = await self._call(
                "read lease", partial(self.leases.find_one, {"_id": lease["_id"]})
            )
            stale = now - timedelta(seconds=lease_seconds)
            if taken is None or taken["at"] >= stale:
                return None  # another process won this generation, just now
            generation += 1
        else:
            return None
        update = {
            "$set": {
                "lease_owner": owner,
                "lease_expires": now + timedelta(seconds=lease_seconds),
                "lease_gen": generation,
            },
            "$inc": {"claims": 1},
        }
        # Only while the job is still in a wanted state and no later claim has landed.
        query = {"_id": job_id, "state": {"$in": states}, "lease_gen": {"$lt": generation}}

        async def take() -> Doc | None:
            job: Doc | None = await self.jobs.find_one_and_update(
                query, update, return_document=ReturnDocument.AFTER
            )
            if job is not None:
                await self._mirror(job_id, job)
            return job

        job = await self._write("claim job", take)
        if job is None:  # it finished or moved on meanwhile: take our lease back
            drop = partial(self.leases.delete_one, {"_id": f"{job_id}:{generation}"})
            await self._call("release claim", drop)
        return job

    async def renew_leases(self, owner: str, job_ids: Sequence[str], lease_seconds: float) -> int:
        """Extend the leases ``owner`` still holds; returns how many it still holds."""
        if not job_ids:
            return 0
        expires = utcnow() + timedelta(seconds=lease_seconds)
        change = {"$set": {"lease_expires": expires}}

        async def renew() -> int:
            # One update per job, each by _id (an `$in` filter reads every job document),
            # in commands of at most BULK_UPDATES: FerretDB holds one of its 100 SQLite
            # connections per update of a command until the command ends, and a command
            # of 100 updates waits for ever for the 101st (seen with 200 jobs held).
            held = 0
            for start in range(0, len(job_ids), BULK_UPDATES):
                chunk = job_ids[start : start + BULK_UPDATES]
                mine = [UpdateOne({"_id": i, "lease_owner": owner}, change) for i in chunk]
                result = await self.jobs.bulk_write(mine, ordered=False)
                await self.active.bulk_write(mine, ordered=False)
                held += int(result.matched_count)
            return held

        return await self._write("renew leases", renew)

    async def release_job(self, owner: str, job_id: str) -> None:
        free = {"lease_owner": None, "lease_expires": None}

        async def release() -> None:
            result = await self.jobs.update_one(
                {"_id": job_id, "lease_owner": owner}, {"$set": free}
            )
            if result.matched_count:
                await self._mirror(job_id, free)

        await self._write("release job", release)

    async def move_job(
        self,
        job_id: str,
        sources: Iterable[JobState],
        new: JobState,
        fields: Doc | None = None,
        *,
        owner: str | None = None,
    ) -> bool:
        """Compare-and-set: move the job to ``new`` only if it is in one of ``sources``
        (and, with ``owner``, only if that owner holds it). True if it moved."""
        query: Doc = {"_id": job_id, "state": {"$in": [str(s) for s in sources]}}
        if owner is not None:
            query["lease_owner"] = owner
        changes = {"state": str(new), **(fields or {})}

        async def move() -> bool:
            result = await self.jobs.update_one(query, {"$set": changes})
            if result.modified_count != 1:
                return False
            await self._mirror(job_id, changes)
            return True

        return await self._write("update job", move)

    async def update_job(self, job_id: str, fields: Doc) -> None:
        async def update() -> None:
            await self.jobs.update_one({"_id": job_id}, {"$set": fields})
            await self._mirror(job_id, fields)

        await self._write("update job", update)

    async def request_cancel(self, job_id: str) -> None:
        """Record that the job's owner should cancel it (idempotent)."""

        await self._insert_unique("cancel job", self.cancels, {"_id": job_id, "at": utcnow()})

    async def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        """Which of ``job_ids`` have a cancellation request."""

        async def run() -> set[str]:
            cursor = self.cancels.find({"_id": {"$in": list(job_ids)}}, {"_id": 1})
            return {str(doc["_id"]) async for doc in cursor}

        return await self._call("read cancellations", run)

    async def forget_leases(self, job_id: str) -> None:
        """Drop a finished job's lease history."""
        await self._call("forget leases", lambda: self.leases.delete_many({"job_id": job_id}))

    # -- uploaded files ----------------------------------------------------------------

    async def insert_file(self, record: Doc) -> None:
        if not await self._insert_unique(
            "insert file", self.files, record, retried_ok=True, together=self._file_inserts
        ):
            raise StoreError(f"a file with id {record['_id']!r} exists already")

    async def get_file(self, file_id: str) -> Doc | None:
        return await self._call("get file", lambda: self.files.find_one({"_id": file_id}))

    async def update_file(self, file_id: str, fields: Doc) -> Doc | None:
        return await self._call(
            "update file",
            lambda: self.files.find_one_and_update(
                {"_id": file_id}, {"$set": fields}, return_document=ReturnDocument.AFTER
            ),
        )

    # -- service health ----------------------------------------------------------------

    async def set_service_status(self, service_id: str, status: str, message: str = "") -> None:
        await self._call(
            "set service status",
            lambda: self.services.update_one(
                {"_id": service_id},
                {"$set": {"status": status, "message": message, "timestamp": utcnow()}},
                upsert=True,
            ),
        )

    async def service_statuses(self) -> dict[str, Doc]:
        async def run() -> dict[str, Doc]:
            return {doc["_id"]: doc async for doc in self.services.find({})}

        return await self._call("service statuses", run)

    async def active_job_ids(self) -> set[str]:
        """Ids of every job not yet in a final state (and perhaps a few just finished)."""

        async def run() -> set[str]:
            return {str(doc["_id"]) async for doc in self.active.find({}, {"_id": 1})}

        return await self._call("list active jobs", run)

    async def rebuild_active(self) -> int:
        """Give every unfinished job its ``active`` entry (jobs stored by an older version,
        or whose entry was lost); returns how many were missing. Reads every job once."""

        async def run() -> int:
            have = await self.active_job_ids()
            added = 0
            query = {"state": {"$nin": sorted(FINAL_NAMES)}}
            fields = {"state": 1, "submitted_at": 1, "lease_owner": 1, "lease_expires": 1}
            # Read to the end before writing: FerretDB (SQLite) holds writers back while a
            # cursor is open, and a write awaited inside the loop then never comes.
            for job in await self.jobs.find(query, fields).to_list(None):
                if job["_id"] not in have:
                    try:
                        await self.active.insert_one(job)
                    except DuplicateKeyError:
                        continue
                    added += 1
            return added

        return await self._call("rebuild active jobs", run)

    # -- retention ---------------------------------------------------------------------

    async def expired_jobs(self, before: datetime, limit: int = 500) -> list[str]:
        """Finished jobs that completed before ``before``."""
        query = {"state": {"$in": [str(s) for s in FINAL]}, "completed_at": {"$lt": before}}

        async def run() -> list[str]:
            cursor = self.jobs.find(query, {"_id": 1}).limit(limit)
            return [str(doc["_id"]) async for doc in cursor]

        return await self._call("find expired jobs", run)

    async def delete_job(self, job_id: str) -> None:
        await self._call("delete job", lambda: self.jobs.delete_one({"_id": job_id}))
        await self._call("delete job", lambda: self.active.delete_one({"_id": job_id}))
        await self._call("delete job", lambda: self.cancels.delete_one({"_id": job_id}))
        await self._call("delete job", lambda: self.leases.delete_many({"job_id": job_id}))

    async def expired_files(self, before: datetime, limit: int = 500) -> list[Doc]:
        async def run() -> list[Doc]:
            cursor = self.files.find({"created_at": {"$lt": before}}).limit(limit)
            return await cursor.to_list(None)

        return await self._call("find expired files", run)

    async def delete_file(self, file_id: str) -> None:
        await self._call("delete file", lambda: self.files.delete_one({"_id": file_id}))

    async def files_in_use(self) -> set[str]:
        """Upload ids that jobs not yet finished take as input."""

        async def run() -> set[str]:
            used: set[str] = set()
            for entry in await self.active.find({}, {"_id": 1}).to_list(None):  # see above
                job = await self.jobs.find_one({"_id": entry["_id"]}, {"parameters": 1})
                for value in ((job or {}).get("parameters") or {}).values():
                    for item in value if isinstance(value, list) else [value]:
                        if isinstance(item, str):
                            used.add(item)
            return used

        return await self._call("find files in use", run)


def _claimable(job: Doc, states: list[str], now: datetime) -> bool:
    expires = job.get("lease_expires")
    return job.get("state") in states and (expires is None or expires < now)
