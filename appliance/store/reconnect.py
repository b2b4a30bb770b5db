"""The driver's client, replaced by a new one when the server comes back after an outage.

Why not let the driver recover by itself: pymongo (4.15 to 4.20 at least) can stay
unusable for tens of seconds after a server restart when many operations are in flight.
An operation that started while the driver's connection pool was paused fails with
"connection pool paused"; when that error is handled after the pool was made ready
again, it carries the pool's current generation, so the driver marks the server
Unknown, pauses the pool and cancels its own check of the server, and the operations
that fail in turn do the same. With 40 tasks writing one document across a 3 s restart,
1, 9 and 18 of them had written again 30 s after the server was back (three runs;
``tests/test_outage.py`` makes that situation).

So, after the first operation that finds the server away, every operation waits here
instead of retrying on its own; one task makes new clients until the server answers one
(a ping), which then replaces the old client, and the operations go on with the new one,
whose pool has never been paused. The old client is closed at once: operations still on
it (some wait there for a connection until their time limit) fail, and the caller sends
them again on the new one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from appliance.metrics import DATABASE_ERRORS

log = logging.getLogger(__name__)
Doc = dict[str, Any]
MakeClient = Callable[[], AsyncMongoClient[Doc]]
MAX_PROBE_DELAY = 0.5  # seconds between two pings of a server that is away, at most


class Reconnecting:
    """The client to use now (``current``), and its replacement after an outage.

    ``make()`` makes a client; ``replaced`` is called with each new client.
    """

    def __init__(self, make: MakeClient,
                 replaced: Callable[[AsyncMongoClient[Doc]], None]) -> None:  # fmt: skip
        self._make = make
        self._replaced = replaced
        self.current = make()
        self.replacements = 0
        self._ready = asyncio.Event()
        self._ready.set()
        self._recovery: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self, timeout: float) -> bool:
        """Wait for the server to be back, up to ``timeout`` seconds; whether it is."""
        if self._ready.is_set():
            return True
        if timeout <= 0:
            return False
        try:
            async with asyncio.timeout(timeout):  # not wait_for: on 3.11 it can lose a cancel
                await self._ready.wait()
        except TimeoutError:
            return False
        return True

    def failed(self, client: AsyncMongoClient[Doc]) -> None:
        """An operation on ``client`` found the server away (unreachable, or no answer in
        time). From now on, operations wait for the server to answer a new client."""
        if client is not self.current or not self._ready.is_set():
            return  # an old client's failure, or the recovery has begun already
        self._ready.clear()
        self._recovery = asyncio.create_task(self._recover(), name="mongodb-reconnect")

    async def _recover(self) -> None:
        delay = 0.05
        while (client := await self._answering()) is None:
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_PROBE_DELAY)
        old, self.current = self.current, client
        self.replacements += 1
        DATABASE_ERRORS.labels("reconnected").inc()
        self._replaced(client)
        self._ready.set()
        log.warning("MongoDB answers again: a new client replaces the one used before")
        closing = asyncio.create_task(old.close(), name="mongodb-close-old")
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def _answering(self) -> AsyncMongoClient[Doc] | None:
        """A new client that the server has answered once, or None. (Answered once: a
        new client's first operations can also find its pool not ready yet, and fail.)"""
        client = self._make()
        answered = False
        try:
            await client.admin.command("ping")
            answered = True
        except PyMongoError:
            pass
        finally:
            if not answered:
                await client.close()
        return client if answered else None

    async def close(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
            await asyncio.gather(self._recovery, return_exceptions=True)
        if self._closing:  # a replaced client's close, bounded: its operations may be stuck
            await asyncio.wait(self._closing, timeout=5)
        await self.current.close()
