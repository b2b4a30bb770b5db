"""Counts read from the server a moment ago, plus what this process has added since.

The quotas are checked on every submission: the unfinished jobs of the client's address,
everyone's waiting jobs, the bytes the address uploaded. Counting them costs the server a
read each time (on FerretDB, of every entry), three reads per submission. A count this
process read less than ``max_age`` seconds ago, plus the jobs and bytes it accepted since,
is as good within one process; other web workers' additions of the last ``max_age``
seconds are missed, so a cap may be passed by what the other workers accept in that
time, and jobs that ended meanwhile still count (a refusal comes a moment early, never
late for this process's own submissions).
"""

from __future__ import annotations

import time
from collections.abc import Hashable


class RecentCounts:
    def __init__(self) -> None:
        self._seen: dict[Hashable, tuple[float, int]] = {}

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
