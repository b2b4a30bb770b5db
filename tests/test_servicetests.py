"""Service health from the service files' tests, with a real scheduler, Docker and MongoDB:
a service whose test fails is DOWN, and OK again once it passes; a test that does not end
in time is DOWN and its job cancelled; the API shows the status where the previous system
does; several schedulers test a service once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from appliance.catalogue import load_catalogue
from appliance.plan import plan_mapping
from appliance.runners.config import create_backend
from appliance.scheduler.core import Scheduler
from appliance.settings import Settings
from appliance.store import Store
from appliance.web.app import create_app
from tests.helpers import TEST_IMAGE, build_test_image, make_settings, wait_for

pytestmark = pytest.mark.anyio

CHECKED = """\
appliance-version: 1
name: Checked
image: {image}
resources: {{time-limit: 1h}}
parameters:
  input: {{name: Input, type: file}}
  word: {{name: Word, type: text}}
command: sh -c 'grep -q "$0" input.txt && echo found'
args:
  word: {{arg: "$(value)"}}
  input: {{arg: "$(value)", symlink: input.txt}}
tests:
  - parameters: {{input: sample.txt, word: {word}}}
    timeout: {timeout}
    interval: 1h
"""


@pytest.fixture
def settings(tmp_path: Path, mongodb_uri: str, database_name: str) -> Settings:
    build_test_image(tmp_path)
    settings = make_settings(tmp_path, mongodb_uri, database_name, service_tests=True)
    (settings.runners_dir / "docker.yaml").write_text("backend: docker\noptions: {stop_grace: 1}\n")
    (settings.services_dir / "sample.txt").write_text("alpha\nbeta\n")
    return settings


@asynccontextmanager
async def scheduler(settings: Settings, store: Store) -> AsyncIterator[Scheduler]:
    catalogue = load_catalogue(settings)
    assert catalogue.errors == []
    backend = create_backend(catalogue.runners["docker"], settings)
    running = Scheduler(settings, store, catalogue, {"docker": backend})
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    try:
        yield running
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await backend.close()


async def status_of(store: Store, service: str, wanted: set[str]) -> dict[str, Any]:
    async def ended() -> dict[str, Any] | None:
        doc = (await store.service_statuses()).get(service)
        return doc if doc is not None and doc.get("status") in wanted else None

    found: dict[str, Any] = await wait_for(ended, timeout=90)
    return found


def write(settings: Settings, word: str, timeout: str = "5m") -> None:
    text = CHECKED.format(image=TEST_IMAGE, word=word, timeout=timeout)
    (settings.services_dir / "checked.service.yaml").write_text(text)


async def test_a_failing_test_makes_the_service_down_and_a_passing_one_ok(
    settings: Settings, store: Store
) -> None:
    write(settings, "gamma")  # not in the sample: grep fails
    async with scheduler(settings, store):
        down = await status_of(store, "checked", {"DOWN", "OK", "WARNING"})
    assert down["status"] == "DOWN" and "exit code 1" in down["message"]
    with TestClient(create_app(settings)) as client:
        shown = client.get("/api/services/checked").json()["status"]
    assert shown["status"] == "DOWN" and "exit code 1" in shown["errorMessage"]
    assert shown["timestamp"] != "1970-01-01T00:00:00"
    write(settings, "beta")  # fixed: the next start tests it again
    async with scheduler(settings, store):
        ok = await status_of(store, "checked", {"OK"})
    assert ok["message"] == "" and ok["timestamp"] > down["timestamp"]
    _, jobs = await store.find_jobs(services=["checked"], limit=10)
    assert len(jobs) == 2 and {j["client"] for j in jobs} == {"service-test"}
    assert [r for r in await store.usage_stats() if r["service"] == "checked"] == []  # not users'


async def test_test_jobs_are_planned_in_the_web_processes_environment(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's job and a test job of one service get the same command line: both are
    planned in the environment the web process published, whatever the scheduler's."""
    write(settings, "beta")
    path = settings.services_dir / "checked.service.yaml"
    text = path.read_text().replace(
        """sh -c 'grep -q "$0" input.txt && echo found'""",
        """sh -c 'grep -q "$1" input.txt' ${WHERE}""",
    )
    assert "${WHERE}" in text
    path.write_text(text)
    monkeypatch.setenv("WHERE", "the web process")
    with TestClient(create_app(settings)):  # it publishes what the service files name
        pass
    assert await store.planning_environment() == {"WHERE": "the web process"}
    monkeypatch.setenv("WHERE", "the scheduler")
    async with scheduler(settings, store):
        ok = await status_of(store, "checked", {"OK", "DOWN", "WARNING"})
    assert ok["status"] == "OK", ok
    _, [job] = await store.find_jobs(services=["checked"], limit=10)
    assert plan_mapping(job["plan"])["steps"][0]["argv"][3] == "the web process"


async def test_a_test_that_does_not_end_in_time_is_down_and_cancelled(
    settings: Settings, store: Store
) -> None:
    write(settings, "beta", timeout="2s")
    text = (settings.services_dir / "checked.service.yaml").read_text()
    slow = text.replace("&& echo found'", "&& sleep 60'")
    (settings.services_dir / "checked.service.yaml").write_text(slow)
    async with scheduler(settings, store):
        down = await status_of(store, "checked", {"DOWN", "OK", "WARNING"})
        assert down["status"] == "DOWN" and "did not end within 2 s" in down["message"]
        _, jobs = await store.find_jobs(services=["checked"], limit=10)

        async def cancelled() -> bool:
            job = await store.get_job(str(jobs[0]["_id"]))
            return job is not None and job["state"] == "INTERRUPTED"

        await wait_for(cancelled, timeout=60)
    assert len(jobs) == 1  # its claim outlived the timeout: not tested twice


async def test_two_schedulers_test_a_service_once(settings: Settings, store: Store) -> None:
    write(settings, "beta")
    async with scheduler(settings, store), scheduler(settings, store):
        await status_of(store, "checked", {"OK"})
    _, jobs = await store.find_jobs(services=["checked"], limit=10)
    assert len(jobs) == 1


async def test_of_two_claims_at_once_exactly_one_wins(
    store: Store, mongodb_uri: str, database_name: str
) -> None:
    other = Store(mongodb_uri, database_name)
    try:
        for index in range(30):
            service = f"race{index}"
            won = await asyncio.gather(
                store.claim_service_test(service, "a", 60, 3600, due_only=False),
                other.claim_service_test(service, "b", 60, 3600, due_only=False),
            )
            assert sorted(won) == [False, True], (service, won)
            assert not await store.claim_service_test(service, "c", 60, 3600, due_only=False)
            await store.end_service_test(service, "OK", "")
            assert not await store.claim_service_test(service, "c", 60, 3600, due_only=True)
            assert await store.claim_service_test(service, "c", 60, 3600, due_only=False)
    finally:
        await other.close()


async def test_a_test_job_runs_the_tool_even_where_results_are_reused(
    settings: Settings, store: Store
) -> None:
    write(settings, "beta")
    path = settings.services_dir / "checked.service.yaml"
    path.write_text(path.read_text() + "reuse: true\n")
    for _ in range(2):  # each start tests the service again, with the same values
        async with scheduler(settings, store):
            await status_of(store, "checked", {"OK"})
        await store.end_service_test("checked", "UNKNOWN", "")  # the next one is seen ending
    _, jobs = await store.find_jobs(services=["checked"], limit=10)
    assert len(jobs) == 2 and all(j["state"] == "COMPLETED" for j in jobs)
    assert [j.get("reused_from") for j in jobs] == [None, None]
