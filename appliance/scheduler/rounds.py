"""The scheduler's side loops (service tests, webhooks, image checks, reused outputs): a
round, then a pause, for as long as the scheduler runs. A database outage is a warning
and a bug is logged with its traceback; neither stops the loop, the next round tries
again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from appliance.errors import StoreError


async def every(pause: Callable[[], float], what: str, one_round: Callable[[], Awaitable[object]],
                log: logging.Logger) -> None:  # fmt: skip
    """Run ``one_round`` for ever, ``pause()`` seconds apart (read each time: tests
    shorten it)."""
    while True:
        try:
            await one_round()
        except StoreError as exc:
            log.warning("%s: MongoDB unavailable: %s", what, exc)
        except Exception:  # a bug in a round must not stop the scheduler
            log.exception("%s: a round failed; trying again", what)
        await asyncio.sleep(pause())
