"""The scheduler's side loops (service tests, webhooks, image checks, reused outputs): a
round, then a pause, for as long as the scheduler runs; and each of housekeeping's
chores. A database outage is a warning and a bug is logged with its traceback; neither
stops the loop, the next round tries again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from appliance.errors import StoreError


async def guarded(what: str, call: Callable[[], Awaitable[object]], log: logging.Logger) -> None:
    """Await ``call``: a database outage is a warning, a bug is logged with its
    traceback, and neither is raised (the caller's next round or chore goes on)."""
    try:
        await call()
    except StoreError as exc:
        log.warning("%s: MongoDB unavailable: %s", what, exc)
    except Exception:  # a bug in one round or chore must not stop the scheduler
        log.exception("%s failed; tried again next time", what)


async def every(pause: Callable[[], float], what: str, one_round: Callable[[], Awaitable[object]],
                log: logging.Logger) -> None:  # fmt: skip
    """Run ``one_round`` for ever, ``pause()`` seconds apart (read each time: tests
    shorten it)."""
    while True:
        await guarded(what, one_round, log)
        await asyncio.sleep(pause())
