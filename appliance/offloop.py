"""File-system work off the event loop, each call bounded in time.

A scheduler's loop must never wait on a file system: one that hangs (a network file
system whose server went away) would stop its lease renewals, and another scheduler
would adopt jobs this one still follows. Exit records, job directories and staged files
are read and written in a pool of threads of their own; a call that does not end within
its time is given up as ``FilesUnansweredError`` (the job's status is asked again
later), while its thread stays stuck in the kernel until the file system answers. The
pool is bounded, so stuck threads never multiply: once all are stuck, later calls time
out waiting for one.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from appliance.errors import FilesUnansweredError

T = TypeVar("T")


class FileWork:
    def __init__(self, timeout: float, *, workers: int = 8, name: str = "files") -> None:
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)

    async def call(self, what: str, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in the pool; FilesUnansweredError after ``timeout`` s."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, functools.partial(function, *args))
        try:
            async with asyncio.timeout(self.timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            raise FilesUnansweredError(
                f"the jobs' file system did not answer within {self.timeout:g} s ({what})"
            ) from None

    def close(self) -> None:
        """Stop taking work; a thread stuck in the kernel is left to end with the process."""
        self._pool.shutdown(wait=False, cancel_futures=True)
