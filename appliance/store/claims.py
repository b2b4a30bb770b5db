"""Claims and leases: how schedulers share jobs without ever running one twice.

A job is claimable from the write that records it: a new job document is ``ACCEPTED``,
with its runner and no lease, and that is all a claim looks for. Schedulers search the
``jobs`` collection on the ``claim`` index (state, runner, submission time), for the
runners they run only, oldest first.

A claim is one conditional update of the job document: it succeeds only if the job is
still in a wanted state, its lease is free or expired, and its lease generation is the
one the claimant read; it sets the new owner, the expiry, and the next generation. Two
claimants that read the same generation cannot both succeed: the generation is the
fence. MongoDB applies such an update atomically; FerretDB 1.x does not (it reads, then
writes), except the build of ``tools/ferretdb-server``, which runs each update under a
lock (its ``buildInfo`` says ``applianceAtomicUpdates``). ``check_server`` refuses any
other FerretDB 1.x at a scheduler's start, so the claim protocol is the same everywhere.

The holder renews its leases; every later write of the job (``Jobs.move_job``) names
its owner, so a scheduler whose lease was taken over can no longer write the job. Lease
times are read from the database server's clock, so schedulers on machines whose clocks
differ still agree.

Each scheduler also announces itself in ``schedulers`` (its runners, refreshed with its
leases), so that a job whose runner no live scheduler runs says so and ends with a
reason instead of waiting for ever.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from pymongo import ASCENDING, ReturnDocument, UpdateOne

from appliance.errors import ConfigError
from appliance.jobrecord import JobRecord
from appliance.states import JobState
from appliance.store.connection import Connection, Doc
from appliance.store.jobs import Jobs

BULK_UPDATES = 50  # updates per bulk command (see renew)
CANDIDATES_AGE = 1.0  # seconds the claimable jobs found are used for the next claims
PAGES = 8  # pages of a runner's oldest jobs looked at, past jobs being started
SEARCHES = 4  # searches in one claim when others took every job found
CANDIDATE_FIELDS = {"state": 1, "runner": 1, "submitted_at": 1, "lease_expires": 1,
                    "lease_gen": 1}  # fmt: skip


def protocol_for(info: dict[str, Any]) -> str:
    """How a server with this ``buildInfo`` serves claims (a line for the logs);
    ConfigError if it cannot apply a conditional update atomically."""
    version = str(info.get("version", "?"))
    ferret = info.get("ferretdbVersion")
    if ferret is None:
        return f"MongoDB {version}: each claim is one conditional update of the job"
    if int(info.get("applianceAtomicUpdates", 0)) >= 1:
        return (f"FerretDB {ferret} (the appliance's build, updates under one lock): each "
                "claim is one conditional update of the job")  # fmt: skip
    if str(ferret).lstrip("v").split(".")[0] not in ("0", "1"):
        return f"FerretDB {ferret}: each claim is one conditional update of the job"
    raise ConfigError(
        f"the MongoDB-protocol server is FerretDB {ferret}, whose updates are not atomic "
        "across connections: two schedulers could both claim one job. Use MongoDB, "
        "FerretDB 2, or the appliance's build of FerretDB (tools/ferretdb-server)",
        key="mongodb_uri",
    )


async def check_server(connection: Connection) -> str:
    """``protocol_for`` the server ``connection`` talks to."""
    return protocol_for(await connection.build_info())


class Claims:
    def __init__(self, connection: Jobs) -> None:
        self.db = connection
        # Claimable jobs found by a claim, kept for the next ones (``claim``).
        self._candidates: dict[tuple[Any, ...], tuple[float, list[Doc]]] = {}

    async def _claimable(self, states: list[str], runners: Sequence[str], now: datetime,
                         batch: int) -> list[Doc]:  # fmt: skip
        """The oldest jobs in ``states`` of ``runners`` whose lease is free or expired:
        per runner, pages of the claim index in order (a single state and runner let the
        server read the index in order and stop at the page's end), past jobs being
        started under a lease, until ``batch`` are found."""
        found: list[Doc] = []
        state: Any = states[0] if len(states) == 1 else {"$in": states}
        for runner in runners:
            query = {"state": state, "runner": runner}
            for page in range(PAGES):

                async def run(q: Doc = query, skip: int = page * batch) -> list[Doc]:
                    cursor = self.db.jobs.find(q, CANDIDATE_FIELDS).sort("submitted_at", ASCENDING)
                    return await cursor.skip(skip).limit(batch).to_list(None)

                docs = await self.db._call("find claimable jobs", run)
                free = [doc for doc in docs if _free(doc, now)]
                found += free
                if len(docs) < batch or len(free) >= batch:
                    break
        found.sort(key=lambda doc: (doc.get("submitted_at") or now, str(doc["_id"])))
        return found[:batch]

    async def claim(
        self,
        owner: str,
        states: Iterable[JobState],
        lease_seconds: float,
        *,
        runners: Sequence[str],
        batch: int = 16,
        setting: Doc | None = None,
    ) -> JobRecord | None:
        """Take the oldest job in ``states`` of one of ``runners`` whose lease is free or
        expired; None if there is none. ``setting``: more fields written by the claim."""
        now = await self.db.now()
        wanted = [str(s) for s in states]
        # The jobs found are kept for the next claims (a batch of submissions is claimed
        # one job after another) for CANDIDATES_AGE at most; a kept one that another
        # scheduler took meanwhile just fails its conditional update. Jobs found just now
        # and all taken by others (schedulers claiming at once) are looked for again.
        key = (tuple(wanted), tuple(runners))
        fetched_at, candidates = self._candidates.get(key, (0.0, []))
        fresh, lost, searches = False, False, 0
        while True:
            if not candidates or time.monotonic() - fetched_at > CANDIDATES_AGE:
                if (fresh and not lost) or searches >= SEARCHES:
                    return None
                candidates = await self._claimable(wanted, runners, now, batch)
                fetched_at, fresh, lost = time.monotonic(), True, False
                searches += 1
                self._candidates[key] = (fetched_at, candidates)
                if not candidates:
                    return None
            job = await self._take(candidates.pop(0), owner, wanted, now, lease_seconds, setting)
            if job is not None:
                return job
            lost = True

    async def claim_by_id(
        self, owner: str, job_id: str, states: Iterable[JobState], lease_seconds: float
    ) -> JobRecord | None:
        """Take one given job, if it is in ``states`` and its lease is free or expired."""
        now = await self.db.now()
        wanted = [str(s) for s in states]
        job = await self.db.get_job(job_id)
        if job is None or job.get("state") not in wanted or not _free(cast(Doc, job), now):
            return None
        return await self._take(cast(Doc, job), owner, wanted, now, lease_seconds)

    async def _take(self, candidate: Doc, owner: str, states: list[str], now: datetime,
                    lease_seconds: float, setting: Doc | None = None) -> JobRecord | None:  # fmt: skip
        """The claim itself: one conditional update, fenced by the lease generation."""
        job_id = str(candidate["_id"])
        generation = candidate.get("lease_gen")
        taken = int(generation or 0) + 1
        query: Doc = {"_id": job_id, "state": {"$in": states}, "lease_gen": generation,
                      "$or": [{"lease_expires": None}, {"lease_expires": {"$lt": now}}]}  # fmt: skip
        update = {"$set": {**(setting or {}), "lease_owner": owner, "lease_gen": taken,
                           "lease_expires": now + timedelta(seconds=lease_seconds)},
                  "$inc": {"claims": 1}}  # fmt: skip
        attempts = 0

        async def take() -> JobRecord | None:
            nonlocal attempts
            attempts += 1
            job = await self.db.jobs.find_one_and_update(
                query, update, return_document=ReturnDocument.AFTER
            )
            if job is None and attempts > 1:  # applied before the connection broke?
                job = await self.db.jobs.find_one({"_id": job_id})
                if job is None or job.get("lease_gen") != taken or job.get("lease_owner") != owner:
                    return None
            return cast(JobRecord | None, job)

        return await self.db._write(job_id, "claim job", take)

    async def renew(self, owner: str, job_ids: Sequence[str], lease_seconds: float) -> set[str]:
        """Extend the leases ``owner`` still holds; returns the ids it still holds. A job
        whose write is under way (perhaps hung) is left for the next renewal: its lease
        does not hold the others back."""
        if not job_ids:
            return set()
        expires = await self.db.now() + timedelta(seconds=lease_seconds)
        change = {"$set": {"lease_expires": expires}}

        async with self.db.locks.hold_free(job_ids) as free:

            async def renew() -> set[str]:
                # One update per job, each by _id, in commands of at most BULK_UPDATES.
                held: set[str] = set()
                for start in range(0, len(free), BULK_UPDATES):
                    chunk = free[start : start + BULK_UPDATES]
                    mine = [UpdateOne({"_id": i, "lease_owner": owner}, change) for i in chunk]
                    result = await self.db.jobs.bulk_write(mine, ordered=False)
                    if result.matched_count == len(chunk):
                        held.update(chunk)
                        continue
                    for job_id in chunk:  # some were taken over: which (by _id each)
                        job = await self.db.jobs.find_one({"_id": job_id}, {"lease_owner": 1})
                        if job is not None and job.get("lease_owner") == owner:
                            held.add(job_id)
                return held

            held = await self.db._call("renew leases", renew)
        return held | (set(job_ids) - set(free))  # the busy ones: checked next time

    async def release(self, owner: str, job_id: str) -> None:
        """Give a held job's lease back (a stopping scheduler: the next one adopts it)."""
        free = {"lease_owner": None, "lease_expires": None}
        await self.db._write(job_id, "release job", lambda: self.db.jobs.update_one(
            {"_id": job_id, "lease_owner": owner}, {"$set": free}))  # fmt: skip

    # -- schedulers ----------------------------------------------------------------------

    async def announce(self, owner: str, runners: Sequence[str]) -> None:
        """Say that ``owner`` is alive and runs ``runners`` (refreshed with its leases)."""
        now = await self.db.now()
        doc: dict[str, Any] = {"runners": list(runners), "seen_at": now}
        await self.db._call("announce scheduler", lambda: self.db.schedulers.update_one(
            {"_id": owner}, {"$set": doc}, upsert=True), upsert=True)  # fmt: skip

    async def withdraw(self, owner: str) -> None:
        await self.db._call("withdraw scheduler",
                            lambda: self.db.schedulers.delete_one({"_id": owner}))  # fmt: skip

    async def live_runners(self, within: float) -> set[str]:
        """Runners that a scheduler seen in the last ``within`` seconds runs."""
        since = await self.db.now() - timedelta(seconds=within)

        async def run() -> list[Doc]:
            return await self.db.schedulers.find({}).to_list(None)

        live: set[str] = set()
        for doc in await self.db._call("list schedulers", run):
            if doc.get("seen_at") and doc["seen_at"] >= since:
                live.update(str(r) for r in doc.get("runners") or ())
        return live


def _free(job: Doc, now: datetime) -> bool:
    expires = job.get("lease_expires")
    return expires is None or expires < now
