"""What each runner's images are, as its engine last said: the ``images`` collection
(``Store.images``), so that the web process, which never holds an engine, can make a
reuse key (``appliance.reusekey``) at submission.

One document per runner and image name: ``{_id: "<runner> <image>", id: <content id>,
checked_at}``. A scheduler publishes what it inspects and inspects every published
image of its runners again every few seconds (``appliance.scheduler.images``); the web
trusts a publication only while it is fresh (``checked_at`` within ``TRUSTED_FOR``), so
an image rebuilt under the same name, or a scheduler that stopped, ends the trust within
seconds, and the job then goes to a scheduler, which inspects the image itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from appliance.store.connection import Connection

TRUSTED_FOR = timedelta(seconds=15)  # three checks (``appliance.scheduler.images``)


def image_key(runner: str, image: str) -> str:
    return f"{runner} {image}"


class Images:
    def __init__(self, connection: Connection) -> None:
        self.db = connection

    def _images(self) -> Any:
        return self.db.collection("images")

    async def publish(self, runner: str, image: str, image_id: str | None, now: datetime) -> None:
        """``image`` is ``image_id`` on ``runner``'s engine now (None: it has none)."""
        key = image_key(runner, image)
        if image_id is None:
            await self.db._call(
                "withdraw an image", lambda: self._images().delete_one({"_id": key})
            )
            return
        document = {"runner": runner, "image": image, "id": image_id, "checked_at": now}
        await self.db._call("publish an image", lambda: self._images().replace_one(
            {"_id": key}, document, upsert=True), upsert=True)  # fmt: skip

    async def checked(self, runner: str, images: Sequence[str], now: datetime) -> None:
        """These images of ``runner`` were inspected at ``now`` and are unchanged."""
        if images:
            keys = [image_key(runner, i) for i in images]
            await self.db._call("mark images checked", lambda: self._images().update_many(
                {"_id": {"$in": keys}}, {"$set": {"checked_at": now}}))  # fmt: skip

    async def of_runners(self, runners: Sequence[str]) -> dict[tuple[str, str], str]:
        """Every published image of these runners: ``(runner, image) -> id``."""

        async def find() -> dict[tuple[str, str], str]:
            cursor = self._images().find({"runner": {"$in": list(runners)}})
            return {(str(d["runner"]), str(d["image"])): str(d["id"]) async for d in cursor}

        return await self.db._call("read published images", find)

    async def trusted(self, runner: str, images: Sequence[str], now: datetime) -> list[str] | None:
        """The content ids of ``images`` on ``runner``, in order, if every one is published
        and fresh; None otherwise."""
        keys = [image_key(runner, i) for i in images]

        async def find() -> dict[str, Any]:
            cursor = self._images().find({"_id": {"$in": keys}})
            return {str(d["_id"]): d async for d in cursor}

        found = await self.db._call("read published images", find)
        ids = []
        for key in keys:
            document = found.get(key)
            if document is None or now - document["checked_at"] > TRUSTED_FOR:
                return None
            ids.append(str(document["id"]))
        return ids
