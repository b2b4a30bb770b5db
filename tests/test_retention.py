from __future__ import annotations

import errno
from datetime import timedelta
from pathlib import Path

import pytest

from appliance import retention
from appliance.store import Store, new_id, utcnow
from tests.helpers import make_settings

pytestmark = pytest.mark.anyio


async def test_old_jobs_and_uploads_are_deleted(
    tmp_path: Path, mongodb_uri: str, database_name: str, store: Store
) -> None:
    settings = make_settings(
        tmp_path, mongodb_uri, database_name, job_retention="1d", upload_retention="2d"
    )
    now = utcnow()

    async def job(state: str, age_days: float, uses: str | None = None) -> str:
        job_id = new_id()
        (settings.jobs_dir / job_id).mkdir()
        (settings.jobs_dir / job_id / "out.txt").write_text("x")
        done = now - timedelta(days=age_days)
        await store.insert_job({"_id": job_id, "service": "s", "state": state, "submitted_at": done,
                                "completed_at": done if state == "COMPLETED" else None,
                                "parameters": {"input": uses}})  # fmt: skip
        return job_id

    async def upload(age_days: float) -> str:
        file_id = new_id()
        (settings.uploads_dir / file_id).write_text(">a\nM\n")
        await store.insert_file(
            {"_id": file_id, "path": file_id, "created_at": now - timedelta(days=age_days)}
        )
        return file_id

    old_upload, new_upload, used_upload = await upload(3), await upload(1), await upload(3)
    old_job, new_job = await job("COMPLETED", 2), await job("COMPLETED", 0.5)
    running = await job("RUNNING", 5, uses=used_upload)
    swept = await retention.sweep(store, settings, now)
    assert swept == retention.Swept(jobs=1, uploads=1)
    assert await store.get_job(old_job) is None and not (settings.jobs_dir / old_job).exists()
    for kept in (new_job, running):
        assert (
            await store.get_job(kept) is not None
            and (settings.jobs_dir / kept / "out.txt").exists()
        )
    assert (
        await store.get_file(old_upload) is None
        and not (settings.uploads_dir / old_upload).exists()
    )
    for kept in (new_upload, used_upload):
        assert await store.get_file(kept) is not None and (settings.uploads_dir / kept).exists()
    assert await retention.sweep(store, settings, now) == retention.Swept()  # idempotent


async def test_zero_keeps_everything(
    tmp_path: Path, mongodb_uri: str, database_name: str, store: Store
) -> None:
    settings = make_settings(
        tmp_path, mongodb_uri, database_name, job_retention=0, upload_retention=0
    )
    job_id = new_id()
    old = utcnow() - timedelta(days=400)
    await store.insert_job(
        {
            "_id": job_id,
            "service": "s",
            "state": "COMPLETED",
            "submitted_at": old,
            "completed_at": old,
        }
    )
    assert await retention.sweep(store, settings) == retention.Swept()
    assert await store.get_job(job_id) is not None


async def test_an_upload_that_cannot_be_deleted_keeps_its_record_and_stops_nothing(
    tmp_path: Path, mongodb_uri: str, database_name: str, store: Store,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    settings = make_settings(tmp_path, mongodb_uri, database_name, upload_retention="1d")
    old = utcnow() - timedelta(days=2)
    stuck, fine = new_id(), new_id()
    for file_id in (stuck, fine):
        (settings.uploads_dir / file_id).write_text(">a\nM\n")
    unlink = Path.unlink

    def read_only_for_one(path: Path, missing_ok: bool = False) -> None:
        if path.name == stuck:  # as on a read-only mount (seen in the bundle's soak)
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        unlink(path, missing_ok)

    monkeypatch.setattr(Path, "unlink", read_only_for_one)
    for file_id in (stuck, fine):
        await store.insert_file({"_id": file_id, "path": file_id, "created_at": old})
    swept = await retention.sweep(store, settings)
    assert swept == retention.Swept(uploads=1)
    assert await store.get_file(fine) is None and not (settings.uploads_dir / fine).exists()
    assert await store.get_file(stuck) is not None  # tried again next time
    assert "1 expired uploads could not be deleted" in caplog.text
