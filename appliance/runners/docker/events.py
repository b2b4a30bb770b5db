"""The Docker engine's event stream, read by a thread: our containers starting and dying,
or images tagged, pulled, loaded or deleted (each a stream of its own, by ``filters``).

A container's death is told twice: to the backend (``on_death``: the engine's list lags
the event by a moment, and a freed slot can be filled at once) and to the scheduler's
event loop (the ``changed`` notice, so statuses are asked at once). An image's change is
told by ``changed`` only (the scheduler then asks what its images are now). After an
error the stream is opened again a second later, with a notice, since something may
have been missed meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable

from appliance.aio import wait_event
from appliance.runners.docker.engine import Engine

log = logging.getLogger(__name__)


CONTAINERS = {"type": ["container"], "event": ["start", "die"]}
IMAGES = {"type": ["image"], "event": ["tag", "untag", "delete", "pull", "load", "import"]}


class EngineEvents:
    def __init__(self, base_url: str, filters: dict[str, list[str]],
                 on_death: Callable[[str], None] | None = None) -> None:  # fmt: skip
        self.base_url = base_url
        self.filters = filters  # CONTAINERS with our label, or IMAGES
        self.on_death = on_death
        self.closing = False
        self._engine: Engine | None = None
        self._thread: threading.Thread | None = None
        self._change: asyncio.Event | None = None
        self.lost_at: float | None = None  # when the stream last broke (time.time())

    def _read(self, loop: asyncio.AbstractEventLoop, change: asyncio.Event) -> None:
        filters = self.filters
        while not self.closing:
            try:
                self._engine = engine = Engine(self.base_url, timeout=None)
                try:
                    stream = engine.open("GET", "/events", {"filters": json.dumps(filters)},
                                         what="follow the engine's events")  # fmt: skip
                    while line := stream.readline():  # one JSON object a line
                        event = json.loads(line)
                        if event.get("Action") == "die" and self.on_death is not None:
                            attributes = event.get("Actor", {}).get("Attributes", {})
                            self.on_death(str(attributes.get("name")))
                        self._notify(loop, change)
                finally:
                    engine.close()
            except Exception as exc:  # the engine went away: try again in a moment
                if not self.closing:
                    log.debug("docker events: %s", exc)
            if not self.closing:
                self.lost_at = time.time()
                self._notify(loop, change)  # something may have been missed
                time.sleep(1.0)

    def _notify(self, loop: asyncio.AbstractEventLoop, change: asyncio.Event) -> None:
        try:
            loop.call_soon_threadsafe(change.set)
        except RuntimeError:  # the loop is gone (the backend was never closed): stop
            self.closing = True

    async def changed(self, timeout: float) -> None:
        """Return when an event came (or after ``timeout``)."""
        if self._thread is None:
            self._change = asyncio.Event()
            self._thread = threading.Thread(
                target=self._read, args=(asyncio.get_running_loop(), self._change),
                name=f"docker-events-{self.filters['type'][0]}", daemon=True,
            )  # fmt: skip
            self._thread.start()
        assert self._change is not None
        await wait_event(self._change, timeout)
        self._change.clear()

    def close(self) -> None:
        self.closing = True
        if self._engine is not None:
            self._engine.close()  # wakes the reader, which sees closing and stops
