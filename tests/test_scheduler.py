"""The scheduler against a real MongoDB, with the in-memory backend (fast)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from appliance.catalogue import load_catalogue
from appliance.messaging import WakeSender
from appliance.runners.memory import MemoryBackend
from appliance.scheduler import Scheduler
from appliance.settings import Settings
from appliance.store import Store
from tests.helpers import make_settings, submit, wait_final, wait_for, wait_state, write_probe

pytestmark = pytest.mark.anyio


class Running:
    """A scheduler running in the background of a test."""

    def __init__(
        self, settings: Settings, store: Store, backend: MemoryBackend, **options: Any
    ) -> None:
        self.catalogue = load_catalogue(settings)
        assert self.catalogue.errors == []
        self.backend = backend
        self.scheduler = Scheduler(settings, store, self.catalogue, {"mem": backend}, **options)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.scheduler.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)

    def kill(self) -> None:
        """Die without giving anything back, like kill -9."""
        self.task.cancel()


@pytest.fixture
def settings(tmp_path: Path, mongodb_uri: str, database_name: str) -> Settings:
    settings = make_settings(tmp_path, mongodb_uri, database_name)
    write_probe(settings, "mem", backend="memory")
    return settings


@pytest.fixture
async def running(settings: Settings, store: Store) -> AsyncIterator[Running]:
    run = Running(settings, store, MemoryBackend())
    yield run
    with contextlib.suppress(Exception):
        await run.close()
    await run.backend.close()


async def test_a_job_runs_to_completion_with_outputs_recorded(
    running: Running, store: Store, settings: Settings
) -> None:
    service = running.catalogue.services["probe"]
    job_id = await submit(store, service, "touch", "made.txt")
    job = await wait_final(store, job_id)
    assert job["state"] == "COMPLETED"
    assert job["exit_code"] == 0
    assert job["runner"] == "mem" and job["backend"] == "memory" and job["handle"] == job_id
    assert job["command"] == ["env", "touch", "made.txt"]
    assert job["started_at"] <= job["completed_at"]
    paths = {o["path"]: o for o in job["outputs"]}
    assert set(paths) == {"made.txt", "stdout", "stderr"}
    assert paths["made.txt"]["id"] == "made" and paths["made.txt"]["media_type"] == "text/plain"
    assert (settings.jobs_dir / job_id / "made.txt").is_file()
    assert job["lease_owner"] is None
    assert await store.leases.count_documents({"job_id": job_id}) == 0


async def test_exit_codes_map_to_states(running: Running, store: Store) -> None:
    service = running.catalogue.services["probe"]
    failed = await submit(store, service, "false")
    missing = await submit(store, service, "missing")
    echoed = await submit(store, service, "echo", "hi", "there")
    assert (await wait_final(store, failed))["state"] == "FAILED"
    job = await wait_final(store, missing)
    assert job["state"] == "ERROR" and job["exit_code"] == 127
    assert (await wait_final(store, echoed))["state"] == "COMPLETED"


async def test_cancel_a_running_job(running: Running, store: Store) -> None:
    job_id = await submit(store, running.catalogue.services["probe"], "sleep", "60")
    await wait_state(store, job_id, "RUNNING")
    await store.request_cancel(job_id)
    job = await wait_final(store, job_id, timeout=5)
    assert job["state"] == "INTERRUPTED"
    assert job["error"] == "cancelled"


async def test_cancel_before_start_never_runs(settings: Settings, store: Store) -> None:
    service = write_probe(settings, "mem", backend="memory")
    job_id = await submit(store, service, "echo", "never")
    await store.request_cancel(job_id)
    run = Running(settings, store, MemoryBackend())
    try:
        job = await wait_final(store, job_id)
    finally:
        await run.close()
    assert job["state"] == "INTERRUPTED"
    assert "before it started" in job["error"]
    assert run.backend.submissions == []


async def test_time_limit(settings: Settings, store: Store) -> None:
    service = write_probe(settings, "mem", backend="memory", time_limit="0.5s")
    run = Running(settings, store, MemoryBackend())
    try:
        job_id = await submit(store, service, "sleep", "30")
        job = await wait_final(store, job_id, timeout=10)
    finally:
        await run.close()
    assert job["state"] == "FAILED"
    assert "time limit" in job["error"]


async def test_unreachable_runner_retries_then_runs(settings: Settings, store: Store) -> None:
    service = write_probe(settings, "mem", backend="memory")
    backend = MemoryBackend()
    backend.reachable = False
    run = Running(settings, store, backend)
    try:
        job_id = await submit(store, service, "echo", "later")
        await wait_for(lambda: _field(store, job_id, "attempts"), timeout=10)
        assert (await store.get_job(job_id))["state"] == "ACCEPTED"  # type: ignore[index]
        backend.reachable = True
        job = await wait_final(store, job_id, timeout=15)
    finally:
        await run.close()
    assert job["state"] == "COMPLETED"


async def test_unreachable_runner_fails_the_job_with_a_reason(
    settings: Settings, store: Store
) -> None:
    service = write_probe(settings, "mem", backend="memory")
    backend = MemoryBackend()
    backend.reachable = False
    run = Running(settings, store, backend, submit_retry_seconds=1.0)
    try:
        job_id = await submit(store, service, "echo", "x")
        job = await wait_final(store, job_id, timeout=15)
    finally:
        await run.close()
    assert job["state"] == "ERROR"
    assert "unreachable" in job["error"] and "switched off" in job["error"]


async def _field(store: Store, job_id: str, name: str) -> Any:
    job = await store.get_job(job_id)
    return job.get(name) if job else None


async def test_a_wake_up_starts_a_job_within_milliseconds(settings: Settings, store: Store) -> None:
    slow_sweep = make_settings(Path(str(settings.jobs_dir.parent)), settings.mongodb_uri,
                               settings.mongodb_database, sweep_seconds=60)  # fmt: skip
    run = Running(slow_sweep, store, MemoryBackend())
    sender = WakeSender(slow_sweep.scheduler_address)
    try:
        await asyncio.sleep(0.5)  # the first sweep is over; now only a wake-up can start work
        job_id = await submit(store, run.catalogue.services["probe"], "echo", "fast")
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await sender.notify("submitted", job_id)
        await wait_final(store, job_id, timeout=5)
        assert loop.time() - started < 2.0  # far below the 60 s sweep
    finally:
        sender.close()
        await run.close()


async def test_rejected_when_no_runner_is_chosen(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    module = tmp_path / "pick_none.py"
    module.write_text("def select(values):\n    return None\n")
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        path = settings.services_dir / "probe.service.yaml"
        text = path.read_text().replace(
            "runner: mem\n",
            "execution: {runners: {default: {runner: mem}}, selector: pick_none.select}\n",
        )
        path.write_text(text)
        run = Running(settings, store, MemoryBackend())
        try:
            job_id = await submit(store, run.catalogue.services["probe"], "echo", "x")
            job = await wait_final(store, job_id)
        finally:
            await run.close()
    finally:
        sys.path.remove(str(tmp_path))
    assert job["state"] == "REJECTED"


async def test_a_dead_schedulers_jobs_are_adopted_and_finish_once(
    settings: Settings, store: Store
) -> None:
    backend = MemoryBackend()
    first = Running(settings, store, backend)
    service = first.catalogue.services["probe"]
    ids = [await submit(store, service, "sleep", "1.5") for _ in range(5)]
    for job_id in ids:
        await wait_state(store, job_id, "RUNNING")
    first.kill()  # no leases given back: the next scheduler must wait for them to expire
    second = Running(settings, store, backend)
    try:
        jobs = [await wait_final(store, job_id, timeout=20) for job_id in ids]
    finally:
        await second.close()
    assert [j["state"] for j in jobs] == ["COMPLETED"] * 5
    assert sorted(backend.submissions) == sorted(ids)  # each started exactly once
    assert all(j["lease_gen"] == 2 for j in jobs)


async def test_stop_gives_jobs_back_for_the_next_scheduler(
    settings: Settings, store: Store
) -> None:
    backend = MemoryBackend()
    first = Running(settings, store, backend)
    job_id = await submit(store, first.catalogue.services["probe"], "sleep", "1")
    await wait_state(store, job_id, "RUNNING")
    await first.close()
    assert (await store.get_job(job_id))["lease_owner"] is None  # type: ignore[index]
    second = Running(settings, store, backend)
    try:
        job = await wait_final(store, job_id, timeout=10)
    finally:
        await second.close()
    assert job["state"] == "COMPLETED"
    assert backend.submissions == [job_id]


async def test_two_schedulers_never_run_a_job_twice(settings: Settings, store: Store) -> None:
    service = write_probe(settings, "mem", backend="memory")
    ids = [await submit(store, service, "echo", str(i)) for i in range(60)]
    shared = MemoryBackend()  # like one Docker engine behind two schedulers
    first = Running(settings, store, shared)
    second = Running(settings, store, shared, listen=False)
    try:
        jobs = [await wait_final(store, job_id) for job_id in ids]
    finally:
        await first.close()
        await second.close()
    assert all(j["state"] == "COMPLETED" for j in jobs)
    assert sorted(shared.runs) == sorted(ids)  # every job ran, and ran once
    owners = {j["_id"]: j for j in jobs}
    assert len(owners) == 60
