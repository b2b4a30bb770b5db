"""Counters: a number in a document, made on first use, added to by every submission.

Every submission adds to two of them (its month's count for ``GET /api/stats`` and its
client's upload bytes for the quota), and concurrent submissions add to the *same*
documents. On a server that writes one document at a time (FerretDB: one SQLite
transaction each) those updates queued behind each other and capped submissions at about
200/s on two cores. ``Counters`` keeps the additions and sends them every half second,
summed per document (one update each); a submission does not wait for them. What a
process added but had not sent when it died is lost (half a second of counts at most);
on a normal stop it is sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo.errors import DuplicateKeyError

from appliance.errors import StoreError

log = logging.getLogger(__name__)
EVERY = 0.5  # seconds between two sends of a process's additions
KEEP_AT_MOST = 100_000  # additions kept while the server is unreachable


@dataclass(frozen=True)
class Count:
    """Add ``amount`` to ``field`` of document ``key`` in ``collection`` (made with the
    ``made_with`` fields if it does not exist yet)."""

    collection: str
    key: str
    field: str
    amount: int
    made_with: tuple[tuple[str, Any], ...] = ()


def merged(counts: Sequence[Count]) -> dict[tuple[str, str, str], Count]:
    """One addition per collection, document and field: the amounts summed."""
    together: dict[tuple[str, str, str], Count] = {}
    for count in counts:
        place = (count.collection, count.key, count.field)
        earlier = together.get(place)
        together[place] = (count if earlier is None else
                           Count(*place, earlier.amount + count.amount, earlier.made_with))  # fmt: skip
    return together


async def send_counts(db: Any, counts: list[Count]) -> list[bool]:
    """Apply ``counts`` (one update per document, all at once); for each, True if its
    document was made by this send.

    Two senders (two web workers) may make one new document at once: MongoDB retries
    the loser's upsert itself, FerretDB refuses it with a duplicate key error; it is
    sent once more, when the document exists. (Not as one bulk command: FerretDB's answer
    to a bulk with such an error lacks a field, and the driver fails on it.)
    """

    async def add(count: Count) -> bool:
        update: dict[str, Any] = {"$inc": {count.field: count.amount}}
        if count.made_with:
            update["$setOnInsert"] = dict(count.made_with)
        collection = db[count.collection]
        try:
            result = await collection.update_one({"_id": count.key}, update, upsert=True)
        except DuplicateKeyError:
            result = await collection.update_one({"_id": count.key}, update, upsert=True)
        return result.upserted_id is not None

    together = list(merged(counts).values())
    made_now = await asyncio.gather(*(add(count) for count in together))
    made = {(c.collection, c.key) for c, new in zip(together, made_now, strict=True) if new}
    return [(c.collection, c.key) in made for c in counts]


class Counters:
    """Additions kept here and sent every ``every`` seconds by a task of their own.

    ``send(counts)`` applies them (``send_counts`` through the store's retries, on the
    client in use at that moment); ``on_made`` is called with each count whose document
    a send made (the upload quota forgets older periods when a new one starts).
    """

    def __init__(self, send: Callable[[list[Count]], Awaitable[list[bool]]],
                 on_made: Callable[[Count], Awaitable[None]], *, every: float = EVERY) -> None:  # fmt: skip
        self.send = send
        self.on_made = on_made
        self.every = every
        self._pending: list[Count] = []
        self._task: asyncio.Task[None] | None = None
        self._sending = asyncio.Lock()

    def add(self, count: Count) -> None:
        self._pending.append(count)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._later(), name="counters")

    async def _later(self) -> None:
        while self._pending:
            await asyncio.sleep(self.every)
            try:
                await self.flush()
            except StoreError as exc:  # kept for the next round (the oldest dropped)
                log.warning("counts not sent yet: %s", exc)
                del self._pending[:-KEEP_AT_MOST]

    async def flush(self) -> None:
        """Send what was added so far (and wait for it)."""
        async with self._sending:
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                made = await self.send(batch)
            except BaseException:
                self._pending[:0] = batch
                raise
            told: set[tuple[str, str]] = set()
            for count, new in zip(batch, made, strict=True):
                if new and (count.collection, count.key) not in told:  # once a document
                    told.add((count.collection, count.key))
                    await self.on_made(count)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        try:
            await self.flush()
        except StoreError as exc:
            log.warning("%d counts lost at the stop: %s", len(self._pending), exc)
