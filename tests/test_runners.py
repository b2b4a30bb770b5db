"""One behavioural suite, run over every backend: memory, docker (a real engine) and local
(a real ``appliance worker`` process). The scheduler and MongoDB are real in all three."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.catalogue import Catalogue, load_catalogue
from appliance.runners import create_backend
from appliance.runners.base import Backend
from appliance.scheduler import Scheduler
from appliance.settings import Settings
from appliance.store import Store
from tests.helpers import (
    build_test_image,
    make_settings,
    settings_env,
    submit,
    wait_final,
    wait_for,
    wait_state,
    write_probe,
)

pytestmark = pytest.mark.anyio

BACKENDS = ["memory", "docker", "local"]


@contextlib.contextmanager
def worker_process(settings: Settings, slots: int = 4) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance", "worker", "--slots", str(slots)],
        env=settings_env(settings),
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(10)


@dataclass
class Rig:
    kind: str
    settings: Settings
    catalogue: Catalogue
    backend: Backend
    scheduler: Scheduler
    stop: asyncio.Event
    task: asyncio.Task[None]


@pytest.fixture(params=BACKENDS)
async def rig(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    mongodb_uri: str,
    database_name: str,
    store: Store,
) -> AsyncIterator[Rig]:
    kind: str = request.param
    settings = make_settings(tmp_path, mongodb_uri, database_name)
    options = "{stop_grace: 5}" if kind == "docker" else "{}"
    write_probe(settings, kind, time_limit="1h", options=options)
    if kind == "docker":
        build_test_image(tmp_path)
    catalogue = load_catalogue(settings)
    assert catalogue.errors == []
    backend = create_backend(catalogue.runners[kind], settings)
    with contextlib.ExitStack() as stack:
        if kind == "local":
            stack.enter_context(worker_process(settings))
        scheduler = Scheduler(settings, store, catalogue, {kind: backend})
        stop = asyncio.Event()
        task = asyncio.create_task(scheduler.run(stop))
        yield Rig(kind, settings, catalogue, backend, scheduler, stop, task)
        stop.set()
        await asyncio.wait_for(task, 60)
        await backend.close()


async def test_echo_completes_and_keeps_stdout(rig: Rig, store: Store) -> None:
    job_id = await submit(store, rig.catalogue.services["probe"], "echo", "hello", "$(id) ; `x`")
    job = await wait_final(store, job_id, timeout=60)
    assert job["state"] == "COMPLETED", job
    assert job["exit_code"] == 0
    workdir = rig.settings.jobs_dir / job_id
    assert (workdir / "stdout").read_text() == "hello $(id) ; `x`\n"
    assert {o["path"] for o in job["outputs"]} == {"stdout", "stderr"}


async def test_outputs_are_recorded(rig: Rig, store: Store) -> None:
    job_id = await submit(
        store, rig.catalogue.services["probe"], "touch", "a.txt", "b.txt", "c.log"
    )
    job = await wait_final(store, job_id, timeout=60)
    assert job["state"] == "COMPLETED", job
    made = sorted(o["path"] for o in job["outputs"] if o["id"] == "made")
    assert made == ["a.txt", "b.txt"]
    assert (rig.settings.jobs_dir / job_id / "c.log").exists()  # made, but no output matches it


async def test_a_failing_command_fails(rig: Rig, store: Store) -> None:
    job = await wait_final(store, await submit(store, rig.catalogue.services["probe"], "false"), 60)
    assert job["state"] == "FAILED"
    assert job["exit_code"] == 1


async def test_a_missing_program_is_an_error(rig: Rig, store: Store) -> None:
    job = await wait_final(
        store, await submit(store, rig.catalogue.services["probe"], "missing"), 60
    )
    assert job["state"] == "ERROR"
    assert job["exit_code"] == 127


async def test_cancel_a_running_job(rig: Rig, store: Store) -> None:
    job_id = await submit(store, rig.catalogue.services["probe"], "sleep", "120")
    await wait_state(store, job_id, "RUNNING", timeout=60)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await store.request_cancel(job_id)
    rig.scheduler.poke.set()
    job = await wait_final(store, job_id, timeout=30)
    assert job["state"] == "INTERRUPTED"
    assert loop.time() - started < 10


async def test_many_jobs_at_once(rig: Rig, store: Store) -> None:
    service = rig.catalogue.services["probe"]
    ids = [await submit(store, service, "echo", str(i)) for i in range(12)]
    jobs = [await wait_final(store, job_id, timeout=120) for job_id in ids]
    assert [j["state"] for j in jobs] == ["COMPLETED"] * 12
    for i, job_id in enumerate(ids):
        assert (rig.settings.jobs_dir / job_id / "stdout").read_text() == f"{i}\n"


async def test_the_job_gets_a_clean_environment(rig: Rig, store: Store) -> None:
    os.environ["APPLIANCE_TEST_LEAK"] = "secret"
    try:
        job_id = await submit(store, rig.catalogue.services["probe"], "printenv")
        job = await wait_final(store, job_id, timeout=60)
    finally:
        del os.environ["APPLIANCE_TEST_LEAK"]
    assert job["state"] == "COMPLETED", job
    printed = (rig.settings.jobs_dir / job_id / "stdout").read_text()
    assert "APPLIANCE_TEST_LEAK" not in printed
    assert "MONGODB" not in printed
    assert "PROBE_GREETING=hi there" in printed  # the service's own env


async def _running_count(store: Store, ids: list[str]) -> int:
    total, _ = await store.find_jobs(ids=ids, states=["RUNNING"])
    return total


async def test_queued_jobs_wait_for_a_slot_and_all_finish(rig: Rig, store: Store) -> None:
    service = rig.catalogue.services["probe"]
    ids = [await submit(store, service, "sleep", "1") for _ in range(6)]
    await wait_for(lambda: _running_count(store, ids), timeout=60)
    jobs = [await wait_final(store, job_id, timeout=120) for job_id in ids]
    assert all(j["state"] == "COMPLETED" for j in jobs)
