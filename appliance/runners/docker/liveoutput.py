"""A running container's output, copied into its job's directory as it comes.

The engine keeps a container's stdout and stderr until the container ends; then the backend
writes both whole into the job's directory. Meanwhile this copies what the engine has into
the same files every ``interval`` seconds (new lines only, found by their timestamps), up
to ``limit`` bytes per stream, so that the API, the web pages and a user polling the files
see progress. A few containers per round, the least recently copied first, on a thread of
its own, so that following many jobs never slows the scheduler's status rounds.

The files are appended to without following a symlink or writing into anything but a
regular file with one link (the job may have replaced them); the copy of a container is
dropped (``finish``) before the backend writes its final output, so nothing is appended
to the final files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from appliance import safefs

log = logging.getLogger(__name__)

PER_ROUND = 16  # containers copied per round at most
SINCE_MARGIN = 0.001  # seconds asked for before the last line seen (float rounding)


@dataclass
class _Stream:
    path: str
    last: int = 0  # the timestamp (ns) of the last line copied
    written: int = 0


@dataclass
class _Copy:
    workdir: Path
    streams: dict[str, _Stream]
    due: float
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class Running:
    container: Any
    workdir: Path
    stdout: str
    stderr: str


def stamp_ns(stamp: bytes) -> int:
    """Nanoseconds since the epoch of the engine's RFC 3339 timestamp (UTC, ``Z``)."""
    text = stamp.decode("ascii").rstrip("Z")
    whole, _, fraction = text.partition(".")
    seconds = int(datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())
    return seconds * 10**9 + int((fraction + "000000000")[:9])


def new_lines(data: bytes, after: int) -> tuple[bytes, int]:
    """The lines of a timestamped log after ``after`` (ns), without their stamps, and the
    stamp of the last one."""
    out = bytearray()
    last = after
    for line in data.splitlines(keepends=True):
        stamp, space, rest = line.partition(b" ")
        if not space:
            continue
        try:
            at = stamp_ns(stamp)
        except (ValueError, UnicodeDecodeError):
            continue
        if at > after:
            out += rest
            last = max(last, at)
    return bytes(out), last


@contextlib.contextmanager
def appending(root: Path, relative: str) -> Iterator[BinaryIO | None]:
    """``root/relative`` for appending if it is a regular file with one link, reached
    without symlinks; None otherwise (the copy then stops writing it)."""
    handle = safefs.open_regular(root, relative)
    if handle is None:
        yield None
        return
    with handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            yield None
            return
        fd = os.open(f"/proc/self/fd/{handle.fileno()}", os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        with os.fdopen(fd, "ab") as sink:
            yield sink


class LiveOutput:
    def __init__(self, interval: float, limit: int) -> None:
        self.interval = interval
        self.limit = limit
        self._copies: dict[str, _Copy] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="docker-live")
        self._busy = threading.Event()

    @property
    def enabled(self) -> bool:
        return self.interval > 0 and self.limit > 0

    def update(self, running: Sequence[Running]) -> None:
        """Copy new output of the running containers that are due (returns at once: the
        copying is done on the copier's thread; a round still going is not doubled)."""
        if not self.enabled or not running or self._busy.is_set():
            return
        now = time.monotonic()
        due: list[tuple[_Copy, Any]] = []
        with self._lock:
            for run in running:
                copy = self._copies.get(run.container.name)
                if copy is None:  # first seen: its first copy after one interval
                    self._copies[run.container.name] = _Copy(
                        run.workdir, {"stdout": _Stream(run.stdout), "stderr": _Stream(run.stderr)},
                        now + self.interval,
                    )  # fmt: skip
                elif copy.due <= now and not copy.done:
                    due.append((copy, run.container))
        if not due:
            return
        due.sort(key=lambda pair: pair[0].due)
        self._busy.set()
        self._pool.submit(self._copy_all, due[:PER_ROUND])

    def _copy_all(self, due: list[tuple[_Copy, Any]]) -> None:
        try:
            for copy, container in due:
                with copy.lock:
                    if copy.done:
                        continue
                    try:
                        self._copy(copy, container)
                    except Exception as exc:  # the engine, a full volume: try next time
                        log.debug("live output of %s: %s", container.name, exc)
                    copy.due = time.monotonic() + self.interval
        finally:
            self._busy.clear()

    def _copy(self, copy: _Copy, container: Any) -> None:
        for name, stream in copy.streams.items():
            if stream.written >= self.limit:
                continue
            since = stream.last / 1e9 - SINCE_MARGIN if stream.last else None
            options: dict[str, Any] = {"stdout": int(name == "stdout"),
                                       "stderr": int(name == "stderr"), "timestamps": 1}  # fmt: skip
            if since is not None:
                options["since"] = f"{since:.9f}"
            data, stream.last = new_lines(container.output(**options), stream.last)
            if not data:
                continue
            with appending(copy.workdir, stream.path) as sink:
                if sink is None:
                    stream.written = self.limit  # not ours to write any more
                    continue
                part = data[: self.limit - stream.written]
                sink.write(part)
                stream.written += len(part)

    def finish(self, name: str) -> None:
        """The container ended: no more copying into its files (waits for a copy going)."""
        with self._lock:
            copy = self._copies.pop(name, None)
        if copy is not None:
            with copy.lock:
                copy.done = True

    def forget_except(self, names: set[str]) -> None:
        """Drop what is kept of containers no longer listed."""
        with self._lock:
            for name in set(self._copies) - names:
                self._copies.pop(name).done = True

    def close(self) -> None:
        self._pool.shutdown(wait=True)
