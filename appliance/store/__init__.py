"""Everything that talks to MongoDB; the only package that imports pymongo.

Store
├── connection  the client, time limits, retries, the server's clock, per-job locks
├── jobs        job documents: record, read, list, count, move between states, cancel
├── claims      claims and leases (``Store.claims``), schedulers' presence
├── notices     webhooks still to be sent (``Store.notices``)
├── results     results identical jobs may reuse (``Store.results``)
├── images      what each runner's images are, for reuse at submission (``Store.images``)
├── copies      reused outputs still to be copied (``Store.copies``)
├── files       upload records, service health
├── upkeep      what retention and housekeeping read and mark
├── indexes     the indexes each query needs (on servers that use them)
├── formats     the stored records' format, and migrations from older ones
└── coalesce    concurrent inserts sent together
"""

from __future__ import annotations

from typing import Any

from appliance.store import formats, indexes
from appliance.store.claims import Claims, check_server
from appliance.store.connection import Doc, new_id, utcnow
from appliance.store.copies import Copies
from appliance.store.images import Images
from appliance.store.notices import Notices
from appliance.store.results import Results
from appliance.store.upkeep import Upkeep

__all__ = ["Doc", "Store", "new_id", "utcnow"]


class Store(Upkeep):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.claims = Claims(self)
        self.notices = Notices(self)
        self.results = Results(self)
        self.images = Images(self)
        self.copies = Copies(self)

    async def check_claims(self) -> str:
        """How this server serves claims (a line for the logs); ConfigError if it
        cannot (see ``appliance.store.claims``)."""
        return await check_server(self)

    async def secondary_indexes_help(self) -> bool:
        return await indexes.secondary_indexes_help(self)

    async def ensure_indexes(self) -> None:
        await indexes.ensure_indexes(self)

    async def check_format(self) -> str:
        """Migrate older records, refuse newer ones (``appliance.store.formats``)."""
        return await formats.check_format(self)
