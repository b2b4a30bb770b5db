"""Many concurrent small writes sent to the server as a few larger ones.

Under load each web worker has dozens of submissions in flight, and each inserts a job
record: one command per record costs the database server a transaction each, and the
worker a round trip each. A ``Coalescer`` sends the first item at once (an idle system
waits for nothing) and gathers every item that arrives while that send is in flight into
the next one, so the batch size follows the load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """``await submit(item)`` returns ``send(batch)[i]`` for the item's place ``i`` in the
    batch it went out in; if ``send`` raises, every caller of that batch gets the error
    (and may retry its own item)."""

    def __init__(self, send: Callable[[list[T]], Awaitable[list[R]]], *, limit: int = 50) -> None:
        self.send = send
        self.limit = limit
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        sender = self._sender
        if sender is None or sender.done() or sender.get_loop() is not future.get_loop():
            self._sender = asyncio.create_task(self._drain(), name="coalesced sends")
        return await future

    async def _drain(self) -> None:
        """Send batches until nothing waits (one task at a time, so that no caller's
        answer waits for other callers' batches)."""
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self.limit], self._waiting[self.limit :]
                try:
                    results = await self.send([item for item, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"sent {len(batch)} items, got {len(results)} results")
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        except asyncio.CancelledError:  # the loop is closing: nobody is left to send them
            for _, future in batch + self._waiting:
                future.cancel()
            self._waiting.clear()
            raise
