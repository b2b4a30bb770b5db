"""A MongoDB outage pauses the scheduler, which resumes by itself when the server is back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from appliance.catalogue import load_catalogue
from appliance.runners.memory import MemoryBackend
from appliance.scheduler.core import Scheduler
from appliance.store import Store
from appliance.volumes import Volumes
from tests.dbserver import Server
from tests.helpers import make_settings, submit, wait_final, wait_state, write_probe

pytestmark = pytest.mark.anyio


async def test_the_scheduler_rides_out_a_database_restart(tmp_path: Path, server: Server) -> None:
    settings = make_settings(tmp_path, server.uri, "outage", lease_seconds=30)
    write_probe(settings, "mem", backend="memory")
    catalogue = load_catalogue(settings)
    service = catalogue.services["probe"]
    store = Store(server.uri, "outage", retry_seconds=1, server_timeout_ms=300)
    backend = MemoryBackend(Volumes.local(settings))
    scheduler = Scheduler(settings, store, catalogue, {"mem": backend})
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:
        first = await submit(store, service, "sleep", "2")
        await wait_state(store, first, "RUNNING")
        server.stop()
        await asyncio.sleep(3)  # the job ends while the database is away
        assert not task.done()  # the scheduler waits; it does not crash
        server.start()
        job = await wait_final(store, first, timeout=30)
        assert job["state"] == "COMPLETED"
        second = await submit(store, service, "echo", "again")
        assert (await wait_final(store, second, timeout=30))["state"] == "COMPLETED"
        assert backend.runs == [first, second]
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await store.close()
