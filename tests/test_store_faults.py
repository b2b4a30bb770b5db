"""The store and the scheduler against a real server behind a proxy that misbehaves: lost
answers, a server that never answers, one hung write (tests/chaosproxy.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from appliance.catalogue import load_catalogue
from appliance.errors import StoreUnavailableError
from appliance.runners.memory import MemoryBackend
from appliance.scheduler.core import Scheduler
from appliance.states import JobState
from appliance.store import Store, new_id, utcnow
from appliance.volumes import Volumes
from tests.chaosproxy import ChaosProxy, named, on_job
from tests.helpers import make_settings, submit, wait_final, write_probe

pytestmark = pytest.mark.anyio


@pytest.fixture
def proxy(mongodb_uri: str) -> Iterator[ChaosProxy]:
    port = urlsplit(mongodb_uri).port
    assert port is not None
    proxy = ChaosProxy(port)
    yield proxy
    proxy.close()


@pytest.fixture
async def flaky(proxy: ChaosProxy, database_name: str, store: Store) -> AsyncIterator[Store]:
    """A store whose every command goes through the proxy (the ``store`` fixture empties
    the collections first)."""
    flaky = Store(proxy.uri, database_name, retry_seconds=3, timeout_ms=1000)
    yield flaky
    proxy.clear()
    await flaky.close()


async def accepted(store: Store, runner: str = "mem") -> str:
    job_id = new_id()
    await store.insert_job({"_id": job_id, "service": "s", "state": "ACCEPTED",
                            "submitted_at": utcnow(), "runner": runner})  # fmt: skip
    return job_id


async def test_a_move_sent_again_after_its_answer_was_lost_counts_as_done(
    flaky: Store, store: Store, proxy: ChaosProxy
) -> None:
    job_id = await accepted(store)
    proxy.add(on_job("update", job_id), "cut", times=1)  # applied; the answer is lost
    assert await flaky.move_job(job_id, [JobState.ACCEPTED], JobState.QUEUED)
    assert (await store.get_job(job_id) or {})["state"] == "QUEUED"
    assert not await flaky.move_job(job_id, [JobState.ACCEPTED], JobState.RUNNING)


async def test_a_claim_whose_answers_were_lost_is_still_ours(
    flaky: Store, store: Store, proxy: ChaosProxy
) -> None:
    job_id = await accepted(store)
    proxy.add(on_job("findAndModify", job_id), "cut", times=1)  # the job was written
    claimed = await flaky.claims.claim("a", [JobState.ACCEPTED], 30, runners=["mem"])
    assert claimed is not None and claimed["_id"] == job_id
    job = await store.get_job(job_id)
    assert job is not None and job["lease_owner"] == "a" and job["lease_gen"] == 1
    assert job["claims"] == 1  # applied once


async def test_a_server_that_never_answers_a_find_is_an_error_not_a_hang(
    flaky: Store, proxy: ChaosProxy
) -> None:
    proxy.add(named("find"), "hang")
    began = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="does not answer"):
        await flaky.get_job(new_id())
    assert time.monotonic() - began < 10  # bounded: the time limit and the retries
    await flaky.ping()  # the server itself answers


async def test_one_hung_write_does_not_hold_the_other_leases_back(
    proxy: ChaosProxy, database_name: str, store: Store
) -> None:
    patient = Store(proxy.uri, database_name, retry_seconds=30, timeout_ms=30_000)
    try:
        hung, other = await accepted(store), await accepted(store)
        for _ in range(2):
            assert await patient.claims.claim("a", [JobState.ACCEPTED], 30, runners=["mem"])
        before = (await store.get_job(other) or {})["lease_expires"]
        proxy.add(on_job("update", hung), "hang")
        move = asyncio.create_task(patient.move_job(hung, [JobState.ACCEPTED], JobState.QUEUED))
        await asyncio.sleep(0.5)
        assert not move.done()
        kept = await asyncio.wait_for(patient.claims.renew("a", [hung, other], 60), 5)
        assert kept == {hung, other}  # the busy one is checked at the next renewal
        after = (await store.get_job(other) or {})["lease_expires"]
        assert after > before + __import__("datetime").timedelta(seconds=20)
        move.cancel()
    finally:
        proxy.clear()
        await patient.close()


async def test_a_scheduler_stuck_on_the_database_stops_its_heartbeat_and_recovers(
    proxy: ChaosProxy, tmp_path: Path, mongodb_uri: str, database_name: str, store: Store
) -> None:
    settings = make_settings(tmp_path, mongodb_uri, database_name, sweep_seconds=0.3)
    service = write_probe(settings, "mem", backend="memory")
    flaky = Store(proxy.uri, database_name, retry_seconds=1, timeout_ms=500)
    heartbeat = tmp_path / "alive"
    scheduler = Scheduler(settings, flaky, load_catalogue(settings),
                          {"mem": MemoryBackend(Volumes.local(settings))}, heartbeat=heartbeat)  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:
        first = await submit(store, service, "echo", "before")
        assert (await wait_final(store, first))["state"] == "COMPLETED"
        assert time.time() - heartbeat.stat().st_mtime < 2
        proxy.add(named("find"), "hang")  # ping still answers; no query does
        await asyncio.sleep(5)
        assert time.time() - heartbeat.stat().st_mtime > 2.5  # reported unhealthy
        proxy.clear()
        second = await submit(store, service, "echo", "after")
        assert (await wait_final(store, second, timeout=30))["state"] == "COMPLETED"
        await asyncio.sleep(2)
        assert time.time() - heartbeat.stat().st_mtime < 2  # healthy again
    finally:
        proxy.clear()
        stop.set()
        await asyncio.wait_for(task, 30)
        await flaky.close()
