"""Reuse of identical results (appliance.scheduler.reuse, appliance.reusing), with the
memory backend and the real database: an identical job is answered from the first with
nothing started, by the scheduler or at submission; a refusal, another input or a
rebuilt image runs; a gone result is forgotten; an image not checked lately is not
trusted at submission."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from appliance.forms import validate
from appliance.jobrecord import JobRecord
from appliance.model import Service
from appliance.reusing import Answers
from appliance.scheduler import retention
from appliance.settings import Settings
from appliance.store import Store
from appliance.store.images import TRUSTED_FOR
from appliance.submission import record_job
from appliance.volumes import Volumes
from appliance.web.representations import job_json, output_json
from tests.helpers import (
    TEST_IMAGE,
    make_settings,
    planner_for,
    submit,
    wait_final,
    wait_for,
    write_probe,
)
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


async def submitted(settings: Settings, store: Store, service: Service, name: str) -> JobRecord:
    """A job recorded as the web process records it (which may answer it at once)."""
    values = await validate(service, {"program": ["touch"], "arg": [name]})
    return await record_job(store, planner_for(service), service, values,
                            answers=Answers(store, Volumes.local(settings)))  # fmt: skip


async def test_an_identical_job_is_answered_at_submission_then_gets_its_own_files(
    settings: Settings, store: Store
) -> None:
    run = Running(settings, store)
    try:
        service = run.catalogue.services["probe"]
        first = (await submitted(settings, store, service, "made.txt"))["_id"]
        await completed_and_recorded(store, first)  # its start published the image
        second = await submitted(settings, store, service, "made.txt")
        served_first = [output_json(second, o, settings) for o in second.get("outputs") or []]
        copied = await wait_for(lambda: _without_files_of(store, str(second["_id"])), 10)
        third = await submitted(settings, store, service, "made.txt")  # from the first, too
    finally:
        await run.close()
    assert second["state"] == "COMPLETED" and second["reused_from"] == first
    assert second["files_of"] == first  # served from the first's directory meanwhile
    assert served_first and all(f"/{first}/" in f["@content"] for f in served_first)
    assert third["reused_from"] == first
    assert started(run) == {first}  # the second and third: nothing started, not even claimed
    for output in copied["outputs"]:  # then its own copies, served as its own
        own = settings.jobs_dir / str(second["_id"]) / output["path"]
        assert own.read_bytes() == (settings.jobs_dir / first / output["path"]).read_bytes()
        assert f"/{second['_id']}/" in output_json(copied, output, settings)["@content"]
    assert await store.copies.sources() == {first}  # the third's, left when the scheduler stopped


async def _without_files_of(store: Store, job_id: str) -> JobRecord | None:
    job = await store.get_job(job_id)
    return job if job is not None and "files_of" not in job else None


async def test_an_image_not_checked_lately_or_rebuilt_is_not_trusted_at_submission(
    settings: Settings, store: Store
) -> None:
    run = Running(settings, store)
    run.scheduler.image_checks.interval = 0.2
    try:
        service = run.catalogue.services["probe"]
        first = (await submitted(settings, store, service, "made.txt"))["_id"]
        await completed_and_recorded(store, first)
        run.backend.image_ids[TEST_IMAGE] = "sha256:rebuilt"  # the same name, another image
        await wait_for(lambda: _published(store, "sha256:rebuilt"), 10)
        rebuilt = await submitted(settings, store, service, "made.txt")
        await completed_and_recorded(store, str(rebuilt["_id"]))
    finally:
        await run.close()
    assert rebuilt["state"] == "ACCEPTED" and "reused_from" not in rebuilt
    # the scheduler stopped: its publication grows stale and is not trusted
    now = await store.now()
    await store.images.publish("mem", TEST_IMAGE, "sha256:rebuilt", now - TRUSTED_FOR * 2)
    stale = await submitted(settings, store, service, "made.txt")
    assert stale["state"] == "ACCEPTED" and "reused_from" not in stale
    await store.images.publish("mem", TEST_IMAGE, "sha256:rebuilt", now)  # fresh again
    fresh = await submitted(settings, store, service, "made.txt")
    assert fresh["reused_from"] == rebuilt["_id"]
    assert started(run) == {first, rebuilt["_id"]}


async def _published(store: Store, image_id: str) -> bool:
    return await store.images.of_runners(["mem"]) == {("mem", TEST_IMAGE): image_id}


async def test_retention_keeps_a_job_still_to_be_copied_and_forgets_marked_results(
    tmp_path: Path, mongodb_uri: str, database_name: str, store: Store
) -> None:
    settings = make_settings(tmp_path, mongodb_uri, database_name, job_retention="1d")
    now = await store.now()
    old = now - timedelta(days=2)
    for job_id in ("aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"):
        await store.insert_job({"_id": job_id, "kind": "service", "service": "probe",
                                "state": "COMPLETED", "submitted_at": old, "completed_at": old,
                                "parameters": {}, "values": {}})  # fmt: skip
    await store.copies.add("cccccccccccccccc", "aaaaaaaaaaaaaaaa", now)
    await store.results.record("k" * 64, "bbbbbbbbbbbbbbbb", old, [])
    await retention.sweep(store, settings, now, grace=0)  # marks the second
    assert await store.results.find("k" * 64) is None  # nothing new is answered from it
    swept = await retention.sweep(store, settings, now + timedelta(seconds=1), grace=0)
    assert swept.jobs == 1
    assert await store.get_job("aaaaaaaaaaaaaaaa") is not None  # a copy still reads it
    assert await store.get_job("bbbbbbbbbbbbbbbb") is None


async def test_an_image_the_engine_says_was_rebuilt_is_republished_at_once(
    settings: Settings, store: Store
) -> None:
    run = Running(settings, store)
    run.scheduler.image_checks.interval = 300.0  # no periodic check within the test
    try:
        service = run.catalogue.services["probe"]
        first = (await submitted(settings, store, service, "made.txt"))["_id"]
        await completed_and_recorded(store, first)
        await wait_for(lambda: _published(store, f"sha256:memory-{TEST_IMAGE}"), 10)
        run.backend.rebuild(TEST_IMAGE, "sha256:rebuilt")  # and the engine tells
        await wait_for(lambda: _published(store, "sha256:rebuilt"), 5)
        after = await submitted(settings, store, service, "made.txt")
    finally:
        await run.close()
    assert after["state"] == "ACCEPTED" and "reused_from" not in after
