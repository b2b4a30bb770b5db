"""Counts read from the server a moment ago, plus what this process has added since.

The quotas are checked on every submission: the unfinished jobs of the client's address,
everyone's waiting jobs, the bytes the address uploaded. Counting them costs the server a
read each time (on FerretDB, of every entry), three reads per submission. A count this
process read less than ``max_age`` seconds ago, plus the jobs and bytes it accepted since,
is as good within one process; other web workers' additions of the last ``max_age``
seconds are missed, so a cap may be passed by what the other workers accept in that
time, and jobs that ended meanwhile still count (a refusal comes a moment early, never
late for this process's own submissions). When a count is due to be read again, the
submissions asking for it meanwhile share that one read (under load dozens asked at
once, and each read the server).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable


class RecentCounts:
    def __init__(self) -> None:
        self._seen: dict[Hashable, tuple[float, int]] = {}
        self._reading: dict[Hashable, asyncio.Future[int]] = {}

    async def read(self, key: Hashable, max_age: float, fetch: Callable[[], Awaitable[int]]) -> int:
        """The count of ``key``: read at most ``max_age`` seconds ago, or read now with
        ``fetch``, once for all who ask while that read is under way (with ``max_age``
        0, always a read of one's own)."""
        recent = self.get(key, max_age)
        if recent is not None:
            return recent
        if max_age <= 0:
            return await self._fetch(key, fetch)
        pending = self._reading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(key, fetch))
            self._reading[key] = pending
            pending.add_done_callback(lambda _: self._reading.pop(key, None))
        return await asyncio.shield(pending)  # one caller gone does not stop the others'

    async def _fetch(self, key: Hashable, fetch: Callable[[], Awaitable[int]]) -> int:
        count = await fetch()
        self.put(key, count)
        return count

    def get(self, key: Hashable, max_age: float) -> int | None:
        """The count of ``key`` if it was read at most ``max_age`` seconds ago."""
        seen = self._seen.get(key)
        if seen is None or max_age <= 0 or time.monotonic() - seen[0] > max_age:
            return None
        return seen[1]

    def put(self, key: Hashable, count: int) -> None:
        self._seen[key] = (time.monotonic(), count)
        if len(self._seen) > 10_000:  # many client addresses: forget the oldest half
            for old in sorted(self._seen, key=lambda k: self._seen[k][0])[:5_000]:
                del self._seen[old]

    def add(self, amount: int, *keys: Hashable) -> None:
        """This process added ``amount`` to each of ``keys`` (those it has read)."""
        for key in keys:
            seen = self._seen.get(key)
            if seen is not None:
                self._seen[key] = (seen[0], seen[1] + amount)
