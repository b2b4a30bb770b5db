"""The stored records' format: records of 0.1.0 (format 1) migrated when the appliance starts,
step by step and idempotently; a database of a newer format refused, by the scheduler and
the web process alike, with a message that says what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from appliance import __version__
from appliance.states import JobState
from appliance.store import Store
from appliance.store.formats import FORMAT, StoreFormatError
from tests.helpers import make_settings, settings_env

pytestmark = pytest.mark.anyio
WHEN = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def old_job(job_id: str, state: str) -> dict[str, object]:
    """A job document as appliance 0.1.0 wrote it: no lease fields, no waiting reason."""
    return {"_id": job_id, "kind": "service", "service": "upper", "state": state,
            "submitted_at": WHEN, "parameters": {}, "values": {}, "client": "127.0.0.1",
            "runner": "docker", "plan": "{}"}  # fmt: skip


async def test_records_of_0_1_0_are_migrated_once_and_again_changes_nothing(
    mongodb_uri: str, database_name: str
) -> None:
    store = Store(mongodb_uri, f"{database_name}_format1")
    try:
        await store.db.drop_collection("meta")
        await store.jobs.delete_many({})
        await store.jobs.insert_many([old_job("a" * 16, "ACCEPTED"), old_job("b" * 16, "RUNNING")])
        await store.files.insert_one({"_id": "c" * 16, "path": "c" * 16, "label": "x.fa"})
        await store.db["active"].insert_one({"_id": "a" * 16, "runner": "docker"})
        await store.db["leases"].insert_one({"_id": "b" * 16, "owner": "gone"})
        said = await store.check_format()
        assert said.startswith(f"stored records: format {FORMAT}, migrated from format 1")
        accepted = await store.jobs.find_one({"_id": "a" * 16})
        running = await store.jobs.find_one({"_id": "b" * 16})
        assert accepted and running
        for job in (accepted, running):  # free to be claimed, or adopted and followed
            assert (job["lease_owner"], job["lease_expires"], job["lease_gen"], job["claims"],
                    job["format"]) == (None, None, 0, 0, FORMAT)  # fmt: skip
        assert accepted["waiting"]["reason"] == "scheduler" and "waiting" not in running
        assert (await store.files.find_one({"_id": "c" * 16}) or {})["format"] == FORMAT
        names = set(await store.db.list_collection_names())
        assert not names & {"active", "leases"}
        meta = await store.meta.find_one({"_id": "format"})
        assert meta and (meta["version"], meta["appliance"]) == (FORMAT, __version__)
        before = await store.jobs.find_one({"_id": "a" * 16})
        assert await store.check_format() == f"stored records: format {FORMAT}"  # again: nothing
        assert await store.jobs.find_one({"_id": "a" * 16}) == before
        claimed = await store.claims.claim("scheduler-x", [JobState.ACCEPTED], 30,
                                           runners=["docker"])  # fmt: skip
        assert claimed is not None and claimed["_id"] == "a" * 16  # the migrated job is claimable
    finally:
        await store.client.drop_database(f"{database_name}_format1")
        await store.close()


async def test_new_records_say_their_format(store: Store) -> None:
    await store.check_format()
    await store.insert_file({"_id": "d" * 16, "path": "d" * 16, "label": "y.fa"})
    assert (await store.files.find_one({"_id": "d" * 16}) or {})["format"] == FORMAT


async def test_a_newer_format_is_refused_by_the_scheduler_and_the_web_process(
    mongodb_uri: str, database_name: str, tmp_path: Path
) -> None:
    name = f"{database_name}_format99"
    store = Store(mongodb_uri, name)
    try:
        await store.meta.update_one({"_id": "format"},
                                    {"$set": {"version": 99, "appliance": "9.0.0"}},
                                    upsert=True)  # fmt: skip
        with pytest.raises(StoreFormatError) as refused:
            await store.check_format()
        message = refused.value.describe()
        assert "format 99 (written by appliance 9.0.0)" in message
        assert f"appliance {__version__} reads format {FORMAT} and older" in message
        settings = make_settings(tmp_path, mongodb_uri, name)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")},
               **settings_env(settings)}  # fmt: skip
        for command in (["scheduler"], ["web", "--worker"]):
            done = subprocess.run([sys.executable, "-m", "appliance", *command], env=env,
                                  capture_output=True, text=True, timeout=90)  # fmt: skip
            assert done.returncode != 0, (command, done.stderr[-2000:])
            assert "format 99 (written by appliance 9.0.0)" in done.stderr, done.stderr[-2000:]
    finally:
        await store.client.drop_database(name)
        await store.close()


async def test_many_records_migrate_in_batches_each_a_short_call(
    mongodb_uri: str, database_name: str
) -> None:
    """More records than one batch: every one migrated, and no call changes more than a
    batch (one call for all of 10,000 records outlasted database_timeout on FerretDB)."""
    from appliance.store import formats

    name = f"{database_name}_format1_many"
    store = Store(mongodb_uri, name)
    changed: list[int] = []
    original = store.jobs.bulk_write

    async def counting(requests: list[object], ordered: bool = True) -> object:
        result = await original(requests, ordered=ordered)  # type: ignore[arg-type]
        changed.append(result.modified_count)
        return result

    try:
        await store.db.drop_collection("meta")
        count = formats.PAGE + formats.BATCH + 7  # more than a page of ids
        await store.jobs.insert_many([old_job(f"{i:016d}", "COMPLETED") for i in range(count)])
        store.jobs.bulk_write = counting  # type: ignore[method-assign, assignment]
        said = await store.check_format()
        assert said.startswith(f"stored records: format {FORMAT}, migrated from format 1")
        assert await store.jobs.count_documents({"format": FORMAT, "lease_gen": 0}) == count
        assert max(changed) <= formats.BATCH and sum(changed) == count  # one write per job
    finally:
        await store.client.drop_database(name)
        await store.close()
