"""``appliance purge``: an operator deletes finished jobs by age, service and state,
records and files in step, never what an unfinished job reads, and only with --yes."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from appliance.plan import JOBS, Input, Location, Plan, Step, job_location
from appliance.purge import Choice, purge
from appliance.settings import Settings
from appliance.store import Store, new_id, utcnow
from tests.helpers import make_settings, settings_env

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(tmp_path: Path, mongodb_uri: str, database_name: str) -> Settings:
    return make_settings(tmp_path, mongodb_uri, database_name)


async def job(store: Store, settings: Settings, service: str, state: str, age_days: float,
              reads: tuple[Location, ...] = ()) -> str:  # fmt: skip
    job_id = new_id()
    (settings.jobs_dir / job_id).mkdir()
    (settings.jobs_dir / job_id / "out.txt").write_text("x" * 1000)
    ended = utcnow() - timedelta(days=age_days)
    plan = Plan(job_location(job_id), (Step(("true",)),),
                tuple(Input(loc, f"in{i}") for i, loc in enumerate(reads)))  # fmt: skip
    final = state in ("COMPLETED", "FAILED", "ERROR", "INTERRUPTED", "DELETED")
    await store.insert_job({"_id": job_id, "service": service, "state": state,
                            "submitted_at": ended, "plan": plan.to_json(), "runner": "r",
                            "completed_at": ended if final else None})  # fmt: skip
    return job_id


async def exists(store: Store, settings: Settings, job_id: str) -> bool:
    on_disk = (settings.jobs_dir / job_id).exists()
    in_db = await store.get_job(job_id) is not None
    assert on_disk == in_db, job_id  # never one without the other
    return in_db


async def test_it_says_first_and_deletes_only_what_was_chosen(
    store: Store, settings: Settings
) -> None:
    read = await job(store, settings, "clustalo", "COMPLETED", 40)
    failed = await job(store, settings, "clustalo", "FAILED", 40)
    other = await job(store, settings, "mafft", "COMPLETED", 40)
    recent = await job(store, settings, "clustalo", "COMPLETED", 1)
    reader = await job(store, settings, "clustalo", "RUNNING", 0,
                       (Location(JOBS, f"{read}/out.txt"),))  # fmt: skip
    said: list[str] = []
    choice = Choice(30 * 86400, services=["clustalo"])
    assert await purge(settings, choice, really=False, say=said.append) == 1
    assert said[0].startswith("would delete 1 finished jobs ended before ")
    assert "1000 bytes of files" in said[0]
    assert any("clustalo" in line and "FAILED" in line for line in said)
    assert "keeping 1 that unfinished jobs read" in said
    assert said[-1] == "nothing deleted: run again with --yes to delete them"
    for job_id in (read, failed, other, recent, reader):
        assert await exists(store, settings, job_id)  # a dry run deletes nothing

    said.clear()
    assert await purge(settings, Choice(30 * 86400, states=["COMPLETED"]), really=True,
                       grace=0, say=said.append) == 1  # fmt: skip
    assert said[-1].startswith("deleted 1 jobs and their files in ")
    assert "waiting 2 s" in said[-2]  # never less than a lease
    assert not await exists(store, settings, other)
    for job_id in (read, failed, recent, reader):
        assert await exists(store, settings, job_id)
    assert await purge(settings, Choice(30 * 86400, ["clustalo"], ["FAILED"]), really=True,
                       grace=0, say=said.append) == 1  # fmt: skip
    assert not await exists(store, settings, failed)
    for job_id in (read, recent, reader):
        assert await exists(store, settings, job_id)


def test_the_command_refuses_states_that_are_not_final(settings: Settings) -> None:
    env = settings_env(settings)
    result = subprocess.run([sys.executable, "-m", "appliance", "purge", "--older-than", "30d",
                             "--state", "RUNNING"], env=env, capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert "--state: RUNNING is not a final state" in result.stderr
    result = subprocess.run([sys.executable, "-m", "appliance", "purge", "--older-than", "30d"],
                            env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "would delete 0 finished jobs" in result.stdout
