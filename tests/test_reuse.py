"""Reuse of identical results (appliance.scheduler.reuse), with the memory backend and the
real database: an identical job is answered from the first with nothing started; a
refusal, another input or a rebuilt image runs; a gone result is forgotten."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from appliance.jobrecord import JobRecord
from appliance.settings import Settings
from appliance.store import Store
from appliance.web.representations import job_json
from tests.helpers import TEST_IMAGE, make_settings, submit, wait_final, wait_for, write_probe
from tests.test_scheduler import Running

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(tmp_path: Path, mongodb_uri: str, database_name: str) -> Settings:
    settings = make_settings(tmp_path, mongodb_uri, database_name)
    write_probe(settings, "mem", backend="memory")
    path = settings.services_dir / "probe.service.yaml"
    path.write_text(path.read_text() + "reuse: true\n")
    return settings


async def completed_and_recorded(store: Store, job_id: str) -> JobRecord:
    """The job once it completed and its result can be reused."""
    job = await wait_final(store, job_id)
    assert job["state"] == "COMPLETED", job
    key = str(job.get("reuse_key") or "")
    assert key, "no reuse key recorded"
    await wait_for(lambda: store.results.find(key), 10)
    return job


def started(run: Running) -> set[str]:
    return {handle[:16] for handle in run.backend.runs}


async def test_an_identical_job_is_answered_from_the_first_with_nothing_started(
    settings: Settings, store: Store
) -> None:
    run = Running(settings, store)
    try:
        service = run.catalogue.services["probe"]
        assert service.reuse
        first = await submit(store, service, "touch", "made.txt")
        await completed_and_recorded(store, first)
        second = await submit(store, service, "touch", "made.txt")
        again = await wait_final(store, second)
        refused = await submit(store, service, "touch", "made.txt", reuse=False)
        other = await submit(store, service, "touch", "other.txt")
        for job_id in (refused, other):
            assert (await wait_final(store, job_id))["state"] == "COMPLETED"
    finally:
        await run.close()
    assert again["state"] == "COMPLETED" and again["reused_from"] == first
    original = await store.get_job(first)
    assert original is not None and again["outputs"] == original["outputs"]
    assert again["exit_code"] == 0 and "made.txt" in [o["path"] for o in again["outputs"]]
    for output in again["outputs"]:  # its own copies, served as its own
        copied = settings.jobs_dir / second / output["path"]
        assert copied.read_bytes() == (settings.jobs_dir / first / output["path"]).read_bytes()
    assert job_json(again)["reusedFrom"] == first
    assert started(run) == {first, refused, other}  # the second: nothing started
    refused_job = await store.get_job(refused)
    assert refused_job is not None and "reused_from" not in refused_job


async def test_a_rebuilt_image_or_a_gone_result_runs_again(
    settings: Settings, store: Store
) -> None:
    run = Running(settings, store)
    try:
        service = run.catalogue.services["probe"]
        first = await submit(store, service, "touch", "made.txt")
        await completed_and_recorded(store, first)
        run.backend.image_ids[TEST_IMAGE] = "sha256:rebuilt"  # the same name, another image
        rebuilt = await submit(store, service, "touch", "made.txt")
        rebuilt_job = await completed_and_recorded(store, rebuilt)
        shutil.rmtree(settings.jobs_dir / rebuilt)  # its files gone (a disk cleaned by hand)
        after = await submit(store, service, "touch", "made.txt")
        after_job = await wait_final(store, after)
    finally:
        await run.close()
    assert "reused_from" not in rebuilt_job and "reused_from" not in after_job
    assert started(run) == {first, rebuilt, after}
    assert await store.results.find(str(after_job["reuse_key"])) == after  # it replaced it


async def test_a_service_that_does_not_allow_it_is_never_reused(
    tmp_path: Path, mongodb_uri: str, database_name: str, store: Store
) -> None:
    settings = make_settings(tmp_path, mongodb_uri, database_name)
    write_probe(settings, "mem", backend="memory")
    run = Running(settings, store)
    try:
        service = run.catalogue.services["probe"]
        ids = [await submit(store, service, "touch", "made.txt") for _ in range(2)]
        jobs = [await wait_final(store, job_id) for job_id in ids]
    finally:
        await run.close()
    assert all("reuse_key" not in job and "reused_from" not in job for job in jobs)
    assert started(run) == set(ids)
