"""The format of the stored records, and the migrations from older ones.

A database records the format its records are in (a document ``format`` in the ``meta``
collection), and every job and file record carries its own (``format``). An appliance
reads its own format and older ones; when it starts it migrates older records forward,
one format at a time, each step idempotent (a step run twice, or interrupted and run
again, changes nothing more), the format recorded after each step, every step logged.
A database in a newer format than this appliance's is refused: an older appliance never
reads or writes records it does not know (CHANGELOG.md lists the formats).

Formats:

1. appliance 0.1.0 (no ``meta`` document): jobs with ``active`` entries and lease
   documents beside them.
2. appliance 0.2.0: a job document is all a claim needs (lease fields on the job), a
   ``waiting`` reason on every job that waits; no ``active`` or ``leases`` collections.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pymongo import UpdateOne

from appliance import __version__
from appliance.errors import ConfigError
from appliance.waiting import waiting

if TYPE_CHECKING:
    from appliance.store.connection import Connection

log = logging.getLogger(__name__)

FORMAT = 2  # what this version writes and reads (and everything older, by migrating)
RETIRED_COLLECTIONS = ("active", "leases")  # format 1's active entries and lease documents


class StoreFormatError(ConfigError):
    """The database holds records of a format this appliance cannot read."""


BATCH = 500  # records changed by one call: each call stays well inside database_timeout
PAGE = 10 * BATCH  # ids read by one call


async def _batched(store: Connection, what: str, records: Any, query: dict[str, Any],
                   change: dict[str, Any]) -> int:  # fmt: skip
    """``change`` on every record ``query`` finds: their ids read once, then changed a
    batch per call, each record by its id (an index lookup, where a filter over the
    whole collection per batch took FerretDB seconds each). ``query`` no longer finds a
    changed record, so an interrupted run resumes where it stopped."""

    done, last = 0, None
    while True:
        page = query if last is None else {**query, "_id": {"$gt": last}}
        found = await store._call(f"{what}: find", lambda p=page: records.find(  # type: ignore[misc]
            p, {"_id": 1}).sort("_id", 1).limit(PAGE).to_list(None))  # fmt: skip
        if not found:
            return done
        ids = [doc["_id"] for doc in found]
        for start in range(0, len(ids), BATCH):
            batch = [UpdateOne({"_id": i, **query}, change) for i in ids[start : start + BATCH]]
            await store._call(what, lambda b=batch: records.bulk_write(b, ordered=False))  # type: ignore[misc]
        done, last = done + len(ids), ids[-1]
        log.info("stored records: %s: %d so far", what, done)


async def _from_1(store: Connection) -> None:
    """Format 1 (0.1.0) to 2: lease fields on the job documents (a job a 0.1.0 scheduler
    held is then free to be adopted and followed to its end), a waiting reason on every
    job that waits for a scheduler, the collections of active entries and leases gone."""
    now = await store.now()
    await _batched(store, "migrate waiting jobs", store.jobs,
                   {"state": "ACCEPTED", "waiting": {"$exists": False}},
                   {"$set": {"waiting": waiting("scheduler", now)}})  # fmt: skip
    # One write per job (FerretDB takes milliseconds for each): no job of format 1 has
    # lease fields, and from now on each record says its format.
    lease = {"lease_owner": None, "lease_expires": None, "lease_gen": 0, "claims": 0}
    await _batched(store, "migrate jobs' leases", store.jobs, {"format": {"$exists": False}},
                   {"$set": {**lease, "format": 2}})  # fmt: skip
    await _batched(store, "mark the uploads' format", store.files,
                   {"format": {"$exists": False}}, {"$set": {"format": 2}})  # fmt: skip
    names = set(await store._call("list collections", store.db.list_collection_names))
    for retired in names.intersection(RETIRED_COLLECTIONS):
        await store._call(f"drop {retired}", lambda n=retired: store.db.drop_collection(n))  # type: ignore[misc]


# format N -> the step that makes it N + 1
MIGRATIONS: dict[int, Callable[[Connection], Awaitable[None]]] = {1: _from_1}


async def _stored(store: Connection) -> dict[str, Any] | None:
    found: dict[str, Any] | None = await store._call(
        "read the stored format", lambda: store.meta.find_one({"_id": "format"})
    )
    return found


async def check_format(store: Connection) -> str:
    """Migrate the database's records to ``FORMAT`` if they are older (logged, step by
    step); StoreFormatError if they are newer. A line for the logs."""
    began = time.monotonic()
    found = await _stored(store)
    stored = int(found["version"]) if found else 1
    if stored > FORMAT:
        writer = (found or {}).get("appliance", "a newer version")
        raise StoreFormatError(
            f"its records are in format {stored} (written by appliance {writer}); appliance "
            f"{__version__} reads format {FORMAT} and older. Run appliance {writer} or newer, "
            "or restore the backup made before the upgrade",
            source=f"database {store.db.name}",
        )
    first = stored
    while stored < FORMAT:
        log.info("stored records: migrating format %d to %d", stored, stored + 1)
        await MIGRATIONS[stored](store)
        stored += 1
        await store._call("record the stored format", lambda v=stored: store.meta.update_one(  # type: ignore[misc]
            {"_id": "format"},
            {"$set": {"version": v, "appliance": __version__, "at": store.now_cached()}},
            upsert=True))  # fmt: skip
    if first == FORMAT:
        return f"stored records: format {FORMAT}"
    return (f"stored records: format {FORMAT}, migrated from format {first} in "
            f"{time.monotonic() - began:.1f} s")  # fmt: skip
