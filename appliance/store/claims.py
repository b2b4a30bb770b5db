"""Claims and leases: how schedulers share jobs without ever running one twice.

Handing work over between processes relies on one guarantee only: inserting a document
whose ``_id`` exists fails. (MongoDB's findAndModify is atomic, but MongoDB-protocol
servers such as FerretDB implement it as a read followed by a write, and we test against
those too.) A claim inserts ``<job id>:<generation>`` into ``leases``: exactly one
process wins each generation, and only the winner then writes the job. Leases expire
at times read from the database server's clock, so schedulers on machines whose clocks
differ still agree.

Schedulers never search ``jobs``, which grows with every job ever run: each job not yet
finished also has a small entry in ``active`` (state, runner, lease), and claims search
that, for the runners the claiming scheduler has configured only. The job document stays
the truth; an entry found out of date is corrected on the spot. (On MongoDB indexes
would do, but MongoDB-protocol servers like FerretDB over SQLite can only look documents
up by ``_id``: anything else reads the whole collection.)

Each scheduler also announces itself in ``schedulers`` (its runners, refreshed with its
leases), so that a job whose runner no live scheduler runs can be ended with a reason
instead of waiting for ever.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from pymongo import ASCENDING, ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from appliance.jobrecord import ActiveEntry, JobRecord
from appliance.states import JobState
from appliance.store.connection import Doc
from appliance.store.jobs import FINAL_NAMES, Jobs

BULK_UPDATES = 50  # updates per bulk command (see renew_leases)
CLAIM_TRIES = 8  # generations a claim may skip (claimants that died halfway)
CANDIDATES_AGE = 1.0  # seconds the claimable entries found are used for the next claims


class Claims(Jobs):
    # -- active entries ----------------------------------------------------------------

    async def add_entry_for(self, job_id: str) -> bool:
        """``add_entry`` for a job known by id; False if there is no such job."""
        job = await self.get_job(job_id)
        if job is None:
            return False
        await self.add_entry(job)
        return True

    async def count_active(self, *, client: str | None = None, states: Sequence[str] = (),
                           max_age: float = 0.0) -> int:  # fmt: skip
        """Jobs not yet final (from the small ``active`` collection): of one client
        address, and/or in these states. ``max_age``: a count this process made at most
        that many seconds ago will do, with the jobs it accepted since (the quotas,
        checked on every submission; ``appliance.store.recent``)."""
        query: dict[str, Any] = {}
        if client is not None:
            query["client"] = client
        if states:
            query["state"] = {"$in": sorted(states)}
        key = ("active", client, tuple(sorted(states)))

        async def fetch() -> int:
            return int(
                await self._call("count active jobs", lambda: self.count(self.active, query))
            )

        return await self._recent.read(key, max_age, fetch)

    def accepted_job(self, client: str, states: Sequence[str]) -> None:
        """A job was just recorded for ``client`` (in one of ``states``): recent counts
        of active jobs include it."""
        self._recent.add(1, ("active", client, ()), ("active", None, tuple(sorted(states))))

    async def active_entries(self) -> list[ActiveEntry]:
        async def run() -> list[Doc]:
            return await self.active.find({}).to_list(None)

        return cast(list[ActiveEntry], await self._call("list active jobs", run))

    async def active_job_ids(self) -> set[str]:
        """Ids of every job not yet in a final state (and perhaps a few just finished)."""
        return {str(entry["_id"]) for entry in await self.active_entries()}

    async def rebuild_active(self) -> int:
        """Give every unfinished job its ``active`` entry (one whose wake-up was lost);
        returns how many were missing. Reads every job's state once."""

        async def run() -> int:
            have = {str(doc["_id"]) async for doc in self.active.find({}, {"_id": 1})}
            added = 0
            query = {"state": {"$nin": sorted(FINAL_NAMES)}}
            fields = {"state": 1, "runner": 1, "submitted_at": 1, "lease_owner": 1,
                      "lease_expires": 1}  # fmt: skip
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

    async def _correct_entry(
        self, entry: Doc, job: JobRecord | None, now: datetime, lease_seconds: float
    ) -> None:
        """Bring an out-of-date ``active`` entry in line with its job (or drop it)."""
        job_id = str(entry["_id"])
        if job is None:
            # The web process records the entry just before the job: give it time.
            if entry.get("submitted_at") and entry["submitted_at"] < now - timedelta(
                seconds=max(lease_seconds, 60)
            ):
                await self._call("drop entry", lambda: self.active.delete_one({"_id": job_id}))
            return
        await self._write(job_id, "correct entry", lambda: self._mirror(job_id, job))

    # -- claims --------------------------------------------------------------------------

    async def claim_job(
        self,
        owner: str,
        states: Iterable[JobState],
        lease_seconds: float,
        *,
        runners: Sequence[str] | None = None,
        batch: int = 16,
    ) -> JobRecord | None:
        """Take the oldest job in ``states`` (of one of ``runners``, or of none: a job
        recorded without a runner) whose lease is free or expired; None if none is.

        Two processes can never both take one job: each claim must insert the lease
        document of the job's next generation, and only one insert of an ``_id`` succeeds.
        """
        now = await self.now()
        wanted = [str(s) for s in states]
        query: Doc = {
            "state": {"$in": wanted},
            "$or": [{"lease_expires": None}, {"lease_expires": {"$lt": now}}],
        }
        if runners is not None:
            query["runner"] = {"$in": [*runners, None]}

        async def candidates() -> list[Doc]:
            cursor = self.active.find(query).sort("submitted_at", ASCENDING).limit(batch)
            return await cursor.to_list(None)

        # The entries found are kept for the next claims (a batch of submissions is
        # claimed one job after another, and each search sorts every waiting entry), for
        # CANDIDATES_AGE at most; each one's job is read again before it is claimed.
        key = (tuple(wanted), None if runners is None else tuple(runners))
        fetched_at, entries = self._candidates.get(key, (0.0, []))
        fresh = False  # entries found by this call (else: kept from an earlier one)
        while True:
            if not entries or time.monotonic() - fetched_at > CANDIDATES_AGE:
                if fresh:
                    return None
                entries = await self._call("find claimable jobs", candidates)
                fetched_at, fresh = time.monotonic(), True
                self._candidates[key] = (fetched_at, entries)
                if not entries:
                    return None
            entry = entries.pop(0)
            job = await self.get_job(str(entry["_id"]))
            if (
                job is None
                or not _claimable(job, wanted, now)
                or (runners is not None and job.get("runner") not in (*runners, None))
            ):
                if fresh:  # the entry itself is out of date, not just our copy of it
                    await self._correct_entry(entry, job, now, lease_seconds)
                continue
            claimed = await self._claim_one(job, owner, wanted, now, lease_seconds)
            if claimed is not None:
                return claimed

    async def claim_by_id(
        self, owner: str, job_id: str, states: Iterable[JobState], lease_seconds: float
    ) -> JobRecord | None:
        """Take one given job, if it is in ``states`` and its lease is free or expired."""
        now = await self.now()
        wanted = [str(s) for s in states]
        job = await self.get_job(job_id)
        if job is None or not _claimable(job, wanted, now):
            return None
        return await self._claim_one(job, owner, wanted, now, lease_seconds)

    async def _take_lease(self, job_id: str, generation: int, owner: str, now: datetime,
                          lease_seconds: float) -> int | None:  # fmt: skip
        """Insert the lease of ``generation`` (or of a later one, past claimants that died
        halfway); the generation won, or None if another process won it just now."""
        for _ in range(CLAIM_TRIES):
            lease = {"_id": f"{job_id}:{generation}", "job_id": job_id, "owner": owner, "at": now}
            if await self._insert_unique("claim job", "leases", lease):
                return generation
            taken = await self._call(
                "read lease",
                lambda i=lease["_id"]: self.leases.find_one({"_id": i}),  # type: ignore[misc]
            )
            if taken is not None and taken.get("owner") == owner and taken.get("at") == now:
                return generation  # our own insert, applied before a lost answer
            if taken is None or taken["at"] >= now - timedelta(seconds=lease_seconds):
                return None  # another process won this generation, just now
            generation += 1  # a claimant that died between its lease and the job: skip it
        return None

    async def _claim_one(self, candidate: JobRecord, owner: str, states: list[str],
                         now: datetime, lease_seconds: float) -> JobRecord | None:  # fmt: skip
        job_id = str(candidate["_id"])
        generation = await self._take_lease(
            job_id, int(candidate.get("lease_gen") or 0) + 1, owner, now, lease_seconds
        )
        if generation is None:
            return None
        update = {
            "$set": {"lease_owner": owner, "lease_expires": now + timedelta(seconds=lease_seconds),
                     "lease_gen": generation},
            "$inc": {"claims": 1},
        }  # fmt: skip
        # Only while the job is still in a wanted state and no later claim has landed.
        query = {"_id": job_id, "state": {"$in": states}, "lease_gen": {"$lt": generation}}
        attempts = 0

        async def take() -> JobRecord | None:
            nonlocal attempts
            attempts += 1
            job = cast(JobRecord | None, await self.jobs.find_one_and_update(
                query, update, return_document=ReturnDocument.AFTER
            ))  # fmt: skip
            if job is None and attempts > 1:  # applied before the connection broke?
                again = cast(JobRecord | None, await self.jobs.find_one({"_id": job_id}))
                if (
                    again
                    and again.get("lease_gen") == generation
                    and again.get("lease_owner") == owner
                ):
                    job = again
            if job is not None:
                await self._mirror(job_id, job)
            return job

        job = await self._write(job_id, "claim job", take)
        if job is None:  # it finished or moved on meanwhile: take our lease back
            drop = {"_id": f"{job_id}:{generation}"}
            await self._call("release claim", lambda: self.leases.delete_one(drop))
        return job

    async def renew_leases(
        self, owner: str, job_ids: Sequence[str], lease_seconds: float
    ) -> set[str]:
        """Extend the leases ``owner`` still holds; returns the ids it still holds. A job
        whose write is under way (perhaps hung) is left for the next renewal: its lease
        does not hold the others back."""
        if not job_ids:
            return set()
        expires = await self.now() + timedelta(seconds=lease_seconds)
        change = {"$set": {"lease_expires": expires}}

        async with self.locks.hold_free(job_ids) as free:

            async def renew() -> set[str]:
                # One update per job, each by _id (an `$in` filter reads every job document),
                # in commands of at most BULK_UPDATES: FerretDB holds one of its 100 SQLite
                # connections per update of a command until the command ends, and a command
                # of 100 updates waits for ever for the 101st (seen with 200 jobs held).
                held: set[str] = set()
                for start in range(0, len(free), BULK_UPDATES):
                    chunk = free[start : start + BULK_UPDATES]
                    mine = [UpdateOne({"_id": i, "lease_owner": owner}, change) for i in chunk]
                    result = await self.jobs.bulk_write(mine, ordered=False)
                    await self.active.bulk_write(mine, ordered=False)
                    if result.matched_count == len(chunk):
                        held.update(chunk)
                        continue
                    for job_id in chunk:  # some were taken over: which (by _id, see above)
                        job = await self.jobs.find_one({"_id": job_id}, {"lease_owner": 1})
                        if job is not None and job.get("lease_owner") == owner:
                            held.add(job_id)
                return held

            held = await self._call("renew leases", renew)
        return held | (set(job_ids) - set(free))  # the busy ones: checked next time

    async def release_job(self, owner: str, job_id: str) -> None:
        free: JobRecord = {"lease_owner": None, "lease_expires": None}

        async def release() -> None:
            result = await self.jobs.update_one({"_id": job_id, "lease_owner": owner},
                                                {"$set": free})  # fmt: skip
            if result.matched_count:
                await self._mirror(job_id, free)

        await self._write(job_id, "release job", release)

    async def forget_leases(self, job_id: str) -> None:
        """Drop a finished job's lease history."""
        await self._call("forget leases", lambda: self.leases.delete_many({"job_id": job_id}))

    # -- schedulers ----------------------------------------------------------------------

    async def announce(self, owner: str, runners: Sequence[str]) -> None:
        """Say that ``owner`` is alive and runs ``runners`` (refreshed with its leases)."""
        now = await self.now()
        doc: dict[str, Any] = {"runners": list(runners), "seen_at": now}
        await self._call("announce scheduler", lambda: self.schedulers.update_one(
            {"_id": owner}, {"$set": doc}, upsert=True), upsert=True)  # fmt: skip

    async def withdraw(self, owner: str) -> None:
        await self._call("withdraw scheduler", lambda: self.schedulers.delete_one({"_id": owner}))

    async def live_runners(self, within: float) -> set[str]:
        """Runners that a scheduler seen in the last ``within`` seconds runs."""
        since = await self.now() - timedelta(seconds=within)

        async def run() -> list[Doc]:
            return await self.schedulers.find({}).to_list(None)

        live: set[str] = set()
        for doc in await self._call("list schedulers", run):
            if doc.get("seen_at") and doc["seen_at"] >= since:
                live.update(str(r) for r in doc.get("runners") or ())
        return live


def _claimable(job: JobRecord, states: list[str], now: datetime) -> bool:
    expires = job.get("lease_expires")
    return job.get("state") in states and (expires is None or expires < now)
