"""The connection to MongoDB: time limits, retries, the server's clock, per-job locks.

Every operation goes through ``Connection._call``. Each has a time limit (the client's
``timeoutMS``, the ``database_timeout`` setting), so a server that accepts connections
but never answers surfaces as an error instead of a hang; an operation that finds the
server unreachable or timed out waits for it (``reconnect.py``) for up to
``retry_seconds``, is sent again when it answers, and otherwise is raised as
StoreUnavailableError, which callers treat as an outage (the scheduler pauses, the web
process answers 503). Any other error is a StoreError. Only this package imports pymongo.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError, PyMongoError

from appliance.errors import StoreError, StoreUnavailableError
from appliance.metrics import DATABASE_ERRORS
from appliance.store.coalesce import Coalescer
from appliance.store.counters import Count, Counters, send_counts
from appliance.store.recent import RecentCounts
from appliance.store.reconnect import Reconnecting

T = TypeVar("T")
Doc = dict[str, Any]
DUPLICATE_KEY = 11000
CLOCK_REFRESH = 300.0  # seconds between readings of the server's clock


def new_id() -> str:
    """A random id that is safe in URLs and file names (16 characters, 80 bits)."""
    return base64.b32encode(os.urandom(10)).decode("ascii").lower()


def utcnow() -> datetime:
    return datetime.now(UTC)


class KeyedLocks:
    """One lock per key (a job id), made on first use and dropped when nobody holds or
    waits for it. Writes of one job are serialised; writes of different jobs never wait
    for each other, so one hung write cannot hold every lease renewal back."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._release(key)

    @contextlib.asynccontextmanager
    async def hold_free(self, keys: Iterable[str]) -> AsyncIterator[list[str]]:
        """Hold those of ``keys`` that nobody holds now, without waiting; yields them."""
        taken = []
        try:
            for key in dict.fromkeys(keys):
                lock = self._locks.get(key)
                if lock is not None and lock.locked():
                    continue
                lock = self._locks.setdefault(key, asyncio.Lock())
                self._users[key] = self._users.get(key, 0) + 1
                await lock.acquire()  # free: returns without waiting
                taken.append(key)
            yield taken
        finally:
            for key in taken:
                self._locks[key].release()
                self._release(key)

    def _release(self, key: str) -> None:
        self._users[key] -= 1
        if self._users[key] == 0:
            del self._users[key]
            del self._locks[key]


class Connection:
    def __init__(
        self,
        uri: str,
        database: str,
        *,
        retry_seconds: float = 10.0,
        server_timeout_ms: int = 2000,
        timeout_ms: int = 10_000,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        def make() -> AsyncMongoClient[Doc]:
            return AsyncMongoClient(
                uri,
                tz_aware=True,
                tzinfo=UTC,
                serverSelectionTimeoutMS=server_timeout_ms,
                connectTimeoutMS=server_timeout_ms,
                timeoutMS=timeout_ms,
                connect=False,
            )

        self.database = database
        self.clients = Reconnecting(make, self._bind)
        self._bind(self.clients.current)
        self.retry_seconds = retry_seconds
        self.clock = clock
        self._offset: timedelta | None = None
        self._offset_read = 0.0
        self.locks = KeyedLocks()
        self._recent = RecentCounts()  # counts for the quotas, read a moment ago
        self._server: dict[str, Any] | None = None  # its buildInfo, asked once
        # New jobs and upload records from concurrent requests go out together.
        self._job_inserts: Coalescer[Doc, bool] = Coalescer(
            lambda docs: self._insert_many(self.jobs, docs)
        )
        self._file_inserts: Coalescer[Doc, bool] = Coalescer(
            lambda docs: self._insert_many(self.files, docs)
        )
        # A scheduler starting a batch asks, for each job, whether it was cancelled.
        self._cancel_reads: Coalescer[list[str], set[str]] = Coalescer(self._read_cancels)
        # Additions to counters (usage statistics, upload quotas), sent twice a second.
        self._counters = Counters(
            lambda counts: self._call("send counts", lambda: send_counts(self.db, counts)),
            self._counter_made,
        )

    def _bind(self, client: AsyncMongoClient[Doc]) -> None:
        """Use ``client`` from now on (at the start, and after an outage)."""
        self.client = client
        self.db = client[self.database]
        self.jobs = self.db["jobs"]
        self.files = self.db["files"]
        self.services = self.db["services"]
        self.cancels = self.db["cancels"]
        self.schedulers = self.db["schedulers"]
        self.marks = self.db["marks"]  # records about to be deleted (retention)
        self.planning = self.db["planning"]  # the web process's planning environment
        self.usage = self.db["usage"]  # bytes uploaded per client address and period
        self.stats = self.db["stats"]  # submissions per month and service (GET /api/stats)
        self.meta = self.db["meta"]  # the stored records' format (appliance.store.formats)

    def collection(self, name: str) -> AsyncCollection[Doc]:
        """The collection ``name`` of the client in use now."""
        return self.db[name]

    async def close(self) -> None:
        await self._counters.close()
        await self.clients.close()

    async def build_info(self) -> dict[str, Any]:
        if self._server is None:
            info = await self._call("build info", lambda: self.client.admin.command("buildInfo"))
            self._server = dict(info)
        return self._server

    async def is_ferretdb(self) -> bool:
        return "ferretdbVersion" in await self.build_info()

    async def uses_indexes(self) -> bool:
        """Whether the server serves queries from secondary indexes: MongoDB does, and so
        does the FerretDB build of ``tools/ferretdb-server`` (``appliancePushdown`` in its
        ``buildInfo``) for string comparisons, one sort key and counts. FerretDB itself
        looks documents up by ``_id`` only (asked once)."""
        info = await self.build_info()
        return "ferretdbVersion" not in info or int(info.get("appliancePushdown", 0)) >= 1

    async def count(self, collection: AsyncCollection[Doc], query: Doc) -> int:
        """How many documents of ``collection`` match ``query``. On FerretDB with the
        ``count`` command, which its build answers from an index; ``count_documents``
        runs an aggregation, which every FerretDB build answers by reading each match."""
        if await self.is_ferretdb():
            reply = await self.db.command("count", collection.name, query=query)
            return int(reply["n"])
        return await collection.count_documents(query)

    async def flush_counts(self) -> None:
        """Send this process's additions to counters now (they go every half second)."""
        await self._counters.flush()

    async def _counter_made(self, count: Count) -> None:
        """A counter's document was just made: for the upload quota, a new period."""
        if count.collection == "usage":
            window = dict(count.made_with).get("window")
            await self.usage.delete_many({"window": {"$lt": window}})

    async def _read_cancels(self, asked: list[list[str]]) -> list[set[str]]:
        """One read of the cancellation requests for every caller's jobs at once."""
        wanted = sorted({job_id for ids in asked for job_id in ids})
        cursor = self.cancels.find({"_id": {"$in": wanted}}, {"_id": 1})
        found = {str(doc["_id"]) async for doc in cursor}
        return [found.intersection(ids) for ids in asked]

    async def _call(
        self, what: str, operation: Callable[[], Awaitable[T]], *, upsert: bool = False
    ) -> T:
        """Run ``operation``, again while the server is unreachable (up to the retry time;
        see ``reconnect.py`` for how the client waits for the server to be back).

        ``upsert``: the operation is an upsert, which two clients may send at once for a
        new ``_id``. MongoDB retries the loser itself; FerretDB answers it with a duplicate
        key error. Then the document exists, and sending it again updates it.
        """
        deadline = time.monotonic() + self.retry_seconds
        raced = False
        while True:
            if not await self.clients.wait_ready(deadline - time.monotonic()):
                DATABASE_ERRORS.labels("unavailable").inc()
                raise StoreUnavailableError(f"MongoDB is unreachable or does not answer ({what})")
            client = self.clients.current
            try:
                return await operation()
            except DuplicateKeyError as exc:
                if not upsert or raced:
                    DATABASE_ERRORS.labels("refused").inc()
                    raise StoreError(f"MongoDB refused {what}: {exc}") from None
                raced = True
                DATABASE_ERRORS.labels("retried").inc()
            except PyMongoError as exc:
                if client is not self.clients.current:  # replaced (and closed) meanwhile
                    DATABASE_ERRORS.labels("retried").inc()
                    continue  # sent again at once, on the client that replaced it
                # A timeout (the server took longer than timeoutMS) counts as an outage.
                if not isinstance(exc, ConnectionFailure) and not exc.timeout:
                    DATABASE_ERRORS.labels("refused").inc()
                    raise StoreError(f"MongoDB refused {what}: {exc}") from None
                self.clients.failed(client)  # the next attempt waits for the server
                if time.monotonic() >= deadline:
                    DATABASE_ERRORS.labels("unavailable").inc()
                    raise StoreUnavailableError(
                        f"MongoDB is unreachable or does not answer ({what}): {exc}"
                    ) from None
                DATABASE_ERRORS.labels("retried").inc()

    async def _write(self, job_id: str, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """A write of one job document (and its active entry), one at a time per job.

        MongoDB applies each update atomically, but MongoDB-protocol servers like FerretDB
        read, change and write back the whole document: two concurrent updates of one job
        from this process (a lease renewal and a state change) could undo each other.
        """
        async with self.locks.hold(job_id):
            return await self._call(what, operation)

    # -- the server's clock ------------------------------------------------------------

    async def now(self) -> datetime:
        """The time on the database server's clock (read every few minutes; this host's
        clock when the server does not say), so that leases written by schedulers on
        several machines compare times from one clock."""
        if self._offset is None or time.monotonic() - self._offset_read > CLOCK_REFRESH:
            await self.read_clock()
        return self.now_cached()

    def now_cached(self) -> datetime:
        """``now()`` from the last reading of the server's clock, without a new one; in
        whole milliseconds, as the database keeps times."""
        now = self.clock() + (self._offset or timedelta())
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    async def read_clock(self) -> None:
        before = self.clock()
        reply = await self._call("read the server's clock", lambda: self.db.command("hello"))
        after = self.clock()
        server = reply.get("localTime")
        if isinstance(server, datetime):
            server = server if server.tzinfo else server.replace(tzinfo=UTC)
            self._offset = server - (before + (after - before) / 2)
        else:
            self._offset = timedelta()
        self._offset_read = time.monotonic()

    # -- inserts -----------------------------------------------------------------------

    async def _insert_unique(
        self,
        what: str,
        collection: str,
        document: Doc,
        *,
        retried_ok: bool = False,
        together: Coalescer[Doc, bool] | None = None,
    ) -> bool:
        """Insert ``document`` into the collection named ``collection``; False if its
        ``_id`` exists already.

        With ``retried_ok``, a duplicate found on a retry counts as success: the first
        attempt went through before the connection broke. With ``together``, it goes to
        the server with the documents other requests are inserting at the same moment.
        """
        attempts = 0

        async def insert() -> bool:
            nonlocal attempts
            attempts += 1
            if together is not None:
                inserted = await together.submit(document)
            else:
                inserted = (await self._insert_many(self.collection(collection), [document]))[0]
            return inserted or (retried_ok and attempts > 1)

        return await self._call(what, insert)

    @staticmethod
    async def _insert_many(collection: Any, documents: list[Doc]) -> list[bool]:
        """Insert; for each document, True if inserted, False if its ``_id`` existed."""
        try:
            if len(documents) == 1:
                await collection.insert_one(documents[0])
            else:
                await collection.insert_many(documents, ordered=False)
        except DuplicateKeyError:
            return [False]
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != DUPLICATE_KEY for error in errors):
                raise
            duplicates = {int(error["index"]) for error in errors}
            return [i not in duplicates for i in range(len(documents))]
        return [True] * len(documents)

    # -- set-up and health -------------------------------------------------------------

    async def ping(self) -> None:
        await self._call("ping", lambda: self.db.command("ping"))

    async def drop_database(self) -> None:
        await self._call("drop", lambda: self.client.drop_database(self.db.name))
