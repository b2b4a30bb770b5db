"""The indexes of each collection, for servers that use them (``Store.ensure_indexes``).

Each query of the store and the index that serves it on MongoDB:

- jobs: list (``state``/``service`` + ``submitted_at``, newest first): by_state,
  by_service, newest; retention (final + ``completed_at``): expiry; rebuild of active
  entries (``state`` not final): claim; marks (``expiring_at``): expiring.
- active: claims (``state`` + ``runner`` + ``submitted_at``): claim.
- leases: ``job_id``: by_job. files: ``created_at``: by_creation. marks (small): none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.store.connection import Connection

ASCENDING, DESCENDING = 1, -1

Indexes = list[tuple[str, list[tuple[str, int]]]]
JOB_INDEXES: Indexes = [
    ("claim", [("state", ASCENDING), ("lease_expires", ASCENDING)]),
    ("newest", [("submitted_at", DESCENDING)]),
    ("by_service", [("service", ASCENDING), ("submitted_at", DESCENDING)]),
    ("by_state", [("state", ASCENDING), ("submitted_at", DESCENDING)]),
    ("expiry", [("completed_at", ASCENDING)]),
    ("tasks", [("kind", ASCENDING), ("owner", ASCENDING), ("submitted_at", DESCENDING)]),
]
ACTIVE_INDEXES: Indexes = [
    ("claim", [("state", ASCENDING), ("runner", ASCENDING), ("submitted_at", ASCENDING)]),
]
LEASE_INDEXES: Indexes = [
    ("by_job", [("job_id", ASCENDING)]),
]
FILE_INDEXES: Indexes = [
    ("by_creation", [("created_at", ASCENDING)]),
]


async def secondary_indexes_help(store: Connection) -> bool:
    """False on FerretDB: its SQLite backend looks documents up by ``_id`` only, so
    other indexes never speed a query and only slow every write."""
    return await store.uses_indexes()


async def ensure_indexes(store: Connection) -> None:
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
