"""Small asyncio helpers that the long-running loops share.

``asyncio.wait_for`` on Python 3.11 can lose a cancellation: when the awaited event is
set at the moment the task is cancelled, it returns as if nothing happened, and a loop
around it runs on (CPython gh-86296, fixed in 3.12). A scheduler's stop waited for ever
in the tests, now and then, on such a loop. ``asyncio.timeout`` keeps the two apart, so
loops wait with ``wait_event``; ``cancel_all`` cancels again until every task has ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set (True) or ``timeout`` seconds pass (False)."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def cancel_all(tasks: Iterable[asyncio.Task[Any]], patience: float = 5.0) -> None:
    """Cancel ``tasks`` and wait until they have ended, cancelling again each second."""
    pending = {task for task in tasks if not task.done()}
    waited = 0.0
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1.0)
        waited += 1.0
        if waited >= patience:
            break
