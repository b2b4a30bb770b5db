"""Everything that talks to MongoDB; the only package that imports pymongo.

Store
├── connection  the client, time limits, retries, the server's clock, per-job locks
├── jobs        job documents: record, read, list, move between states, cancel
├── claims      active entries, claims and leases, schedulers' presence
├── files       upload records, service health
├── upkeep      what retention and housekeeping read and mark
├── indexes     the indexes each query needs (on servers that use them)
└── coalesce    concurrent inserts sent together
"""

from __future__ import annotations

from appliance.store import indexes
from appliance.store.connection import Doc, new_id, utcnow
from appliance.store.upkeep import Upkeep

__all__ = ["Doc", "Store", "new_id", "utcnow"]


class Store(Upkeep):
    async def secondary_indexes_help(self) -> bool:
        return await indexes.secondary_indexes_help(self)

    async def ensure_indexes(self) -> None:
        await indexes.ensure_indexes(self)
