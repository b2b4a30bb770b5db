"""A local copy of one kind of object (this instance's Jobs, or their pods), kept current
with the watch API: one list, then one long watch from its resourceVersion. After any
error (the watch expired, the apiserver restarted) the copy is listed afresh, so no
deletion is missed. Each change wakes whoever waits in ``changed``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from lightkube import AsyncClient

log = logging.getLogger(__name__)

Json = dict[str, Any]


class Informer:
    def __init__(
        self, client: AsyncClient, kind: Any, namespace: str, labels: dict[str, Any],
        wake: Callable[[], None], retry_seconds: float = 1.0,
    ) -> None:  # fmt: skip
        self.client = client
        self.kind = kind
        self.namespace = namespace
        self.labels = labels
        self.wake = wake
        self.retry_seconds = retry_seconds
        self.objects: dict[str, Json] = {}
        self.synced = asyncio.Event()
        self.error = ""  # the last error, while it lasts
        self.lists = 0  # how many times it listed (tests, logs)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"watch {self.kind.__name__}")

    async def _list(self) -> str:
        listed = self.client.list(self.kind, namespace=self.namespace, labels=self.labels)
        objects = {}
        async for obj in listed:
            objects[obj.metadata.name] = obj.to_dict()
        self.objects = objects
        self.lists += 1
        version = listed.resourceVersion
        return str(version)

    async def _run(self) -> None:
        while True:
            try:
                version = await self._list()
                self.error = ""
                self.synced.set()
                self.wake()
                watch = self.client.watch(self.kind, namespace=self.namespace,
                                          labels=self.labels, resource_version=version)  # fmt: skip
                async for event, obj in watch:
                    name = obj.metadata.name
                    if event == "DELETED":
                        self.objects.pop(name, None)
                    else:
                        self.objects[name] = obj.to_dict()
                    self.wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: list again (nothing is missed)
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("watching %s failed, listing again: %s", self.kind.__name__, self.error)
                await asyncio.sleep(self.retry_seconds)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
