"""Uploaded files' records and the services' health records."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import cast

from pymongo import ReturnDocument

from appliance.errors import StoreError
from appliance.store.connection import Connection, Doc, new_id
from appliance.store.counters import Count
from appliance.store.formats import FORMAT


class Files(Connection):
    async def insert_file(self, record: Doc) -> None:
        record = {"format": FORMAT, **record}
        if not await self._insert_unique(
            "insert file", "files", record, retried_ok=True, together=self._file_inserts
        ):
            raise StoreError(f"a file with id {record['_id']!r} exists already")

    async def get_file(self, file_id: str) -> Doc | None:
        return await self._call("get file", lambda: self.files.find_one({"_id": file_id}))

    async def update_file(self, file_id: str, fields: Doc) -> Doc | None:
        return await self._call(
            "update file",
            lambda: self.files.find_one_and_update(
                {"_id": file_id}, {"$set": fields}, return_document=ReturnDocument.AFTER
            ),
        )

    async def delete_file(self, file_id: str) -> None:
        await self._call("delete file", lambda: self.files.delete_one({"_id": file_id}))

    # -- uploads per client (appliance.web.quotas) -------------------------------------

    async def upload_usage(self, client: str, window: int, *, max_age: float = 0.0) -> int:
        """Bytes ``client`` uploaded in the period numbered ``window`` (``max_age``: as
        ``count_active``'s)."""

        async def fetch() -> int:
            await self.flush_counts()  # this process's, first
            found = await self._call("read upload usage",
                                     lambda: self.usage.find_one({"_id": f"{client}|{window}"}))  # fmt: skip
            return int(found["bytes"]) if found else 0

        return await self._recent.read(("usage", client, window), max_age, fetch)

    async def add_upload_usage(self, client: str, window: int, size: int) -> None:
        """Sent with other additions within half a second (``appliance.store.counters``)."""
        self._counters.add(
            Count("usage", f"{client}|{window}", "bytes", size, (("window", window),))
        )
        self._recent.add(size, ("usage", client, window))

    # -- usage statistics (GET /api/stats) ----------------------------------------------

    async def count_submission(self, service: str, month: str) -> None:
        """One more job of ``service`` submitted in ``month`` (``YYYY-MM``)."""
        self._counters.add(Count("stats", f"{month}|{service}", "count", 1,
                                 (("month", month), ("service", service))))  # fmt: skip

    async def usage_stats(self) -> list[Doc]:
        """Submissions per month and service, oldest month first."""
        await self.flush_counts()  # this process's, first
        found = await self._call("read usage statistics",
                                 lambda: self.stats.find({}).to_list(None))  # fmt: skip
        return sorted(found, key=lambda d: (str(d.get("month")), str(d.get("service"))))

    # -- the planning environment (appliance.submission) ---------------------------------

    async def publish_environment(self, environ: Mapping[str, str]) -> None:
        """The web process's planning environment, for the scheduler's service tests."""
        doc = {"_id": "environment", "variables": dict(environ), "at": await self.now()}
        await self._call("publish the planning environment", lambda: self.planning.replace_one(
            {"_id": "environment"}, doc, upsert=True), upsert=True)  # fmt: skip

    async def planning_environment(self) -> dict[str, str] | None:
        """The planning environment a web process published; None if none has yet."""
        found = await self._call("read the planning environment",
                                 lambda: self.planning.find_one({"_id": "environment"}))  # fmt: skip
        if found is None or not isinstance(found.get("variables"), dict):
            return None
        return {str(k): str(v) for k, v in found["variables"].items()}

    # -- service health ----------------------------------------------------------------

    async def set_service_status(self, service_id: str, status: str, message: str = "") -> None:
        at = await self.now()
        await self._call(
            "set service status",
            lambda: self.services.update_one(
                {"_id": service_id},
                {"$set": {"status": status, "message": message, "timestamp": at}},
                upsert=True,
            ),
            upsert=True,
        )

    async def claim_service_test(self, service_id: str, owner: str, timeout: float,
                                 interval: float, *, due_only: bool) -> bool:  # fmt: skip
        """Take the next test of a service (one scheduler tests it at a time): when no test
        of it is going and (``due_only``) its next test is due. True if this one took it.

        Two schedulers can never both take one: each must insert the mark of the service's
        next test generation, and only one insert of an ``_id`` succeeds (a conditional
        update would not do: MongoDB-protocol servers like FerretDB apply two at once)."""
        at = await self.now()
        await self._insert_unique(
            "mark a service known",
            "services",
            {
                "_id": service_id,
                "status": "UNKNOWN",
                "message": "",
                "epoch": new_id(),
                "test_gen": 0,
            },
        )  # fmt: skip (there already: nothing to do)
        doc = await self._call("read a service's tests",
                               lambda: self.services.find_one({"_id": service_id}))  # fmt: skip
        if doc is None:
            return False
        going, due = doc.get("testing_until"), doc.get("next_test_at")
        if going is not None and going > at:
            return False
        if due_only and due is not None and due > at:
            return False
        generation = int(doc.get("test_gen") or 0) + 1
        mark = f"service-test|{service_id}|{doc.get('epoch', '')}|"
        if not await self._insert_unique("claim a service test", "marks",
                                         {"_id": f"{mark}{generation}", "kind": "service-test",
                                          "at": at}):  # fmt: skip
            return False
        await self._call("claim a service test", lambda: self.services.update_one(
            {"_id": service_id},
            {"$set": {"test_gen": generation, "tested_by": owner,
                      "testing_until": at + timedelta(seconds=timeout),
                      "next_test_at": at + timedelta(seconds=interval)}}))  # fmt: skip
        await self._call("forget an old test's mark",
                         lambda: self.marks.delete_one({"_id": f"{mark}{generation - 1}"}))  # fmt: skip
        return True

    async def end_service_test(self, service_id: str, status: str, message: str) -> None:
        """A test's outcome: the service's status, and no test of it going."""
        at = await self.now()
        await self._call("end a service test", lambda: self.services.update_one(
            {"_id": service_id},
            {"$set": {"status": status, "message": message, "timestamp": at},
             "$unset": {"testing_until": "", "tested_by": ""}}))  # fmt: skip

    async def service_statuses(self) -> dict[str, Doc]:
        async def run() -> dict[str, Doc]:
            return {doc["_id"]: doc async for doc in self.services.find({})}

        return cast(dict[str, Doc], await self._call("service statuses", run))
