"""The indexes of each collection, for servers that use them (``Store.ensure_indexes``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.store import Store

ASCENDING, DESCENDING = 1, -1  # as pymongo spells them (only store.py imports pymongo)

JOB_INDEXES: list[tuple[str, list[tuple[str, int]]]] = [
    ("claim", [("state", ASCENDING), ("lease_expires", ASCENDING)]),
    ("newest", [("submitted_at", DESCENDING)]),
    ("by_service", [("service", ASCENDING), ("submitted_at", DESCENDING)]),
    ("by_state", [("state", ASCENDING), ("submitted_at", DESCENDING)]),
    ("by_runner", [("runner", ASCENDING), ("state", ASCENDING)]),
    ("expiry", [("completed_at", ASCENDING)]),
]
ACTIVE_INDEXES: list[tuple[str, list[tuple[str, int]]]] = [
    ("claim", [("state", ASCENDING), ("submitted_at", ASCENDING)]),
]
LEASE_INDEXES: list[tuple[str, list[tuple[str, int]]]] = [
    ("by_job", [("job_id", ASCENDING)]),
]
FILE_INDEXES: list[tuple[str, list[tuple[str, int]]]] = [
    ("by_job", [("job_id", ASCENDING)]),
    ("by_creation", [("created_at", ASCENDING)]),
]


async def secondary_indexes_help(store: Store) -> bool:
    """False on FerretDB: its SQLite backend looks documents up by ``_id`` only, so
    other indexes never speed a query and only slow every write."""
    info = await store._call("build info", lambda: store.client.admin.command("buildInfo"))
    return "ferretdbVersion" not in info


async def ensure_indexes(store: Store) -> None:
    if not await secondary_indexes_help(store):
        return
    pairs = (
        (store.jobs, JOB_INDEXES),
        (store.files, FILE_INDEXES),
        (store.leases, LEASE_INDEXES),
        (store.active, ACTIVE_INDEXES),
    )
    for collection, wanted in pairs:
        for name, keys in wanted:
            await store._call(
                f"index {name}",
                lambda c=collection, k=keys, n=name: c.create_index(k, name=n),  # type: ignore[misc]
            )
