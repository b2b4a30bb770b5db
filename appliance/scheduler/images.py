"""Publishing what the runners' images are (``Store.images``), so that the web process can
answer an identical job at submission (``appliance.reusing``) without an engine.

A scheduler publishes each image it inspects for a reuse key, then inspects every
published image of its runners again every ``CHECK_SECONDS``, and at once when an
engine says an image was tagged, pulled, loaded or deleted (the docker runner follows
its engine's events: ``ImageWatching``): unchanged ones are marked checked (one write a
round), a changed one is published anew, a gone one withdrawn. The web trusts a
publication for three rounds only (``appliance.store.images.TRUSTED_FOR``): an image
rebuilt under the same name is republished as soon as its engine tells (at most one
round where it does not), and a scheduler that stopped leaves its images untrusted
within three.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from appliance.aio import cancel_all
from appliance.errors import RunnerError
from appliance.runners.base import ImageIdentity, ImageWatching
from appliance.scheduler.rounds import every
from appliance.store import Store

log = logging.getLogger(__name__)
CHECK_SECONDS = 5.0


class ImageChecks:
    def __init__(self, store: Store, backends: Mapping[str, object],
                 interval: float = CHECK_SECONDS) -> None:  # fmt: skip
        self.store = store
        self.engines = {r: b for r, b in backends.items() if isinstance(b, ImageIdentity)}
        self.interval = interval
        self.known: dict[tuple[str, str], str] = {}
        self._loaded = False

    async def seen(self, runner: str, images: list[str], ids: list[str]) -> None:
        """A scheduler inspected these images of ``runner`` just now."""
        changed = [(i, v) for i, v in zip(images, ids, strict=True)
                   if self.known.get((runner, i)) != v]  # fmt: skip
        if not changed:
            return
        now = await self.store.now()
        for image, image_id in changed:
            await self.store.images.publish(runner, image, image_id, now)
            self.known[(runner, image)] = image_id

    async def run(self) -> None:
        await every(lambda: 0.0, "image checks", self._wait_then_check, log)

    async def _wait_then_check(self) -> None:
        await self._changed(self.interval)
        await self.round()

    async def _changed(self, timeout: float) -> None:
        """Return when an engine says one of its images changed, or after ``timeout``."""
        watching = [e for e in self.engines.values() if isinstance(e, ImageWatching)]
        if not watching:
            await asyncio.sleep(timeout)
            return
        waits = [asyncio.create_task(e.images_changed(timeout)) for e in watching]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_all(waits)

    async def round(self) -> None:
        if not self.engines:
            return
        if not self._loaded:  # what an earlier run of this scheduler (or another) published
            published = await self.store.images.of_runners(list(self.engines))
            self.known = {**published, **self.known}
            self._loaded = True
        now = await self.store.now()
        unchanged: dict[str, list[str]] = {}
        for (runner, image), old in list(self.known.items()):
            engine = self.engines.get(runner)
            if engine is None:
                continue
            try:
                current = await engine.image_id(image)
            except RunnerError as exc:  # not checked: the web stops trusting it soon
                log.debug("image %s of runner %s not checked: %s", image, runner, exc)
                continue
            if current == old:
                unchanged.setdefault(runner, []).append(image)
                continue
            await self.store.images.publish(runner, image, current, now)
            if current is None:
                del self.known[(runner, image)]
            else:
                self.known[(runner, image)] = current
            log.info("image %s of runner %s is %s now", image, runner, current or "gone")
        for runner, images in unchanged.items():
            await self.store.images.checked(runner, images, now)
