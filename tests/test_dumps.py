"""The database's part of a backup: every record back as it was (dates, ids, nested
values), jobs before uploads, who-held-what left out; a database with jobs refused
unless replaced; a dump of a newer format refused."""

from __future__ import annotations

import gzip
import io
import json
from datetime import UTC, datetime

import pytest

from appliance.errors import ConfigError
from appliance.store import Store
from appliance.store.dumps import dump, load

pytestmark = pytest.mark.anyio
WHEN = datetime(2026, 12, 7, 9, 30, 15, 123000, tzinfo=UTC)


async def test_every_record_comes_back_as_it_was(store: Store, mongodb_uri: str,
                                                 database_name: str) -> None:  # fmt: skip
    job = {"_id": "a" * 16, "state": "COMPLETED", "submitted_at": WHEN, "exit_code": 0,
           "values": {"n": 3, "x": 0.5, "flags": [True, None]}, "lease_gen": 7}  # fmt: skip
    await store.jobs.insert_one(job)
    await store.files.insert_one({"_id": "b" * 16, "path": "b" * 16, "created_at": WHEN})
    await store.schedulers.insert_one({"_id": "scheduler-1", "runners": ["docker"]})
    out = io.BytesIO()
    said: list[str] = []
    counts = await dump(store, out, said.append)
    assert counts["jobs"] == 1 and counts["files"] == 1 and "schedulers" not in counts
    lines = gzip.decompress(out.getvalue()).decode().splitlines()
    assert json.loads(lines[0])["format"] >= 1
    assert [json.loads(line)["c"] for line in lines[1:3]] == ["jobs", "files"]  # jobs first

    target = Store(mongodb_uri, f"{database_name}_restored")
    try:
        await target.client.drop_database(f"{database_name}_restored")
        await load(target, io.BytesIO(out.getvalue()), replace=False, say=said.append)
        assert await target.jobs.find_one({"_id": "a" * 16}) == job
        assert (await target.files.find_one({"_id": "b" * 16}) or {})["created_at"] == WHEN
        assert await target.schedulers.count_documents({}) == 0
        with pytest.raises(ConfigError, match="already holds 1 jobs"):
            await load(target, io.BytesIO(out.getvalue()), replace=False, say=said.append)
        await target.jobs.update_one({"_id": "a" * 16}, {"$set": {"state": "ERROR"}})
        await load(target, io.BytesIO(out.getvalue()), replace=True, say=said.append)
        assert (await target.jobs.find_one({"_id": "a" * 16}) or {})["state"] == "COMPLETED"
        newer = gzip.compress(b'{"appliance": "9.0.0", "format": 99}\n')
        with pytest.raises(ConfigError, match="format 99"):
            await load(target, io.BytesIO(newer), replace=True, say=said.append)
    finally:
        await target.client.drop_database(f"{database_name}_restored")
        await target.close()
