"""The indexes of each collection, for servers that use them (``Store.ensure_indexes``).

Each query of the store and the index that serves it on MongoDB:

- jobs: claims (``state`` + ``runner``, oldest first): claimable; unfinished jobs of a
  client address (quotas): by_client; list (``state``/``service`` + ``submitted_at``,
  newest first, ``kind`` not a TES task): list_service_state, list_service, list_state,
  list_all (``kind`` last, so that a count is answered from the index alone); TES
  tasks (``kind`` + ``owner``, newest first): tasks; retention (final +
  ``completed_at``): expiry; unfinished jobs (``state`` in a list): list_state.
- files: ``created_at``: by_creation. marks, schedulers, cancels (small): none.

The FerretDB build of ``tools/ferretdb-server`` serves string comparisons of top-level
fields, one sort key and counts from an index (its ``patches/pushdown.go``), not ranges,
``$nin`` or ``$or``: it gets only the indexes in ``FERRETDB``, the others would only
slow its writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.store.connection import Connection

ASCENDING, DESCENDING = 1, -1

Indexes = list[tuple[str, list[tuple[str, int]]]]
JOB_INDEXES: Indexes = [
    ("claimable", [("state", ASCENDING), ("runner", ASCENDING), ("submitted_at", ASCENDING)]),
    ("by_client", [("client", ASCENDING), ("state", ASCENDING)]),
    ("list_service_state", [("service", ASCENDING), ("state", ASCENDING),
                            ("submitted_at", DESCENDING), ("kind", ASCENDING)]),
    ("list_service", [("service", ASCENDING), ("submitted_at", DESCENDING), ("kind", ASCENDING)]),
    ("list_state", [("state", ASCENDING), ("submitted_at", DESCENDING), ("kind", ASCENDING)]),
    ("list_all", [("submitted_at", DESCENDING), ("kind", ASCENDING)]),
    ("expiry", [("completed_at", ASCENDING)]),
    ("tasks", [("kind", ASCENDING), ("owner", ASCENDING), ("submitted_at", DESCENDING)]),
]  # fmt: skip
# Replaced by the indexes above; dropped where they exist.
RETIRED_JOB_INDEXES = ("newest", "by_service", "by_state", "claim")
FERRETDB = {"claimable", "by_client", "list_service_state", "list_service", "list_state",
            "list_all", "tasks"}  # fmt: skip
FILE_INDEXES: Indexes = [
    ("by_creation", [("created_at", ASCENDING)]),
]


async def secondary_indexes_help(store: Connection) -> bool:
    """False on FerretDB without the pushdown of ``tools/ferretdb-server``: its SQLite
    backend looks documents up by ``_id`` only, so other indexes never speed a query and
    only slow every write."""
    return await store.uses_indexes()


async def ensure_indexes(store: Connection) -> None:
    if not await secondary_indexes_help(store):
        return
    ferretdb = await store.is_ferretdb()
    pairs = (
        (store.jobs, JOB_INDEXES),
        (store.files, FILE_INDEXES),
    )

    async def names() -> set[str]:
        return {index["name"] async for index in await store.jobs.list_indexes()}

    existing = await store._call("list indexes", names)
    for retired in existing.intersection(RETIRED_JOB_INDEXES):
        await store._call(f"drop index {retired}", lambda n=retired: store.jobs.drop_index(n))  # type: ignore[misc]
    for collection, wanted in pairs:
        for name, keys in wanted:
            if ferretdb and name not in FERRETDB:
                continue
            await store._call(
                f"index {name}",
                lambda c=collection, k=keys, n=name: c.create_index(k, name=n),  # type: ignore[misc]
            )
