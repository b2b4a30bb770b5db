"""Retention: old jobs and uploads go, in two phases, and nothing an active job reads."""

from __future__ import annotations

import errno
import os
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from appliance.errors import StoreUnavailableError
from appliance.filerefs import StoreFileLookup
from appliance.plan import JOBS, UPLOADS, Input, Location, Plan, Step, job_location
from appliance.scheduler import retention
from appliance.settings import Settings
from appliance.store import Store, new_id, utcnow
from tests.chaosproxy import ChaosProxy, named
from tests.helpers import make_settings

pytestmark = pytest.mark.anyio
GRACE = retention.MIN_GRACE


@pytest.fixture
def settings(tmp_path: Path, mongodb_uri: str, database_name: str) -> Settings:
    return make_settings(tmp_path, mongodb_uri, database_name, job_retention="1d",
                         upload_retention="2d")  # fmt: skip


class World:
    """Jobs and uploads of given ages, on disk and in the database."""

    def __init__(self, store: Store, settings: Settings, now: datetime) -> None:
        self.store, self.settings, self.now = store, settings, now

    async def job(self, state: str, age_days: float, reads: list[Location] = ()) -> str:  # type: ignore[assignment]
        job_id = new_id()
        (self.settings.jobs_dir / job_id).mkdir()
        (self.settings.jobs_dir / job_id / "out.txt").write_text("x")
        done = self.now - timedelta(days=age_days)
        plan = Plan(job_location(job_id), (Step(("true",)),),
                    tuple(Input(loc, f"in{i}") for i, loc in enumerate(reads)))  # fmt: skip
        await self.store.insert_job({"_id": job_id, "service": "s", "state": state,
                                     "submitted_at": done, "plan": plan.to_json(), "runner": "r",
                                     "completed_at": done if state == "COMPLETED" else None,
                                     "outputs": [{"id": "o", "path": "out.txt", "name": "",
                                                  "media_type": "text/plain"}]})  # fmt: skip
        return job_id

    async def upload(self, age_days: float) -> str:
        file_id = new_id()
        (self.settings.uploads_dir / file_id).write_text(">a\nM\n")
        await self.store.insert_file({"_id": file_id, "path": file_id,
                                      "created_at": self.now - timedelta(days=age_days)})  # fmt: skip
        return file_id

    async def job_exists(self, job_id: str) -> bool:
        on_disk = (self.settings.jobs_dir / job_id / "out.txt").exists()
        in_db = await self.store.get_job(job_id) is not None
        assert on_disk == in_db, job_id  # never one without the other
        return in_db

    async def upload_exists(self, file_id: str) -> bool:
        on_disk = (self.settings.uploads_dir / file_id).exists()
        in_db = await self.store.get_file(file_id) is not None
        assert on_disk == in_db, file_id
        return in_db


@pytest.fixture
async def world(store: Store, settings: Settings) -> World:
    return World(store, settings, utcnow())


async def test_old_jobs_and_uploads_go_in_two_phases(world: World, store: Store,
                                                     settings: Settings) -> None:  # fmt: skip
    old_upload, new_upload, read_upload = (await world.upload(3), await world.upload(1),
                                           await world.upload(3))  # fmt: skip
    old_job, new_job, read_job = (await world.job("COMPLETED", 2), await world.job("COMPLETED", 0.5),
                                  await world.job("COMPLETED", 3))  # fmt: skip
    reader = await world.job("RUNNING", 5, reads=[Location(UPLOADS, read_upload),
                                                   Location(JOBS, f"{read_job}/out.txt")])  # fmt: skip
    swept = await retention.sweep(store, settings, world.now)
    assert swept == retention.Swept(marked=2)  # marked only: nothing is deleted yet
    for job_id in (old_job, new_job, read_job, reader):
        assert await world.job_exists(job_id)
    swept = await retention.sweep(store, settings, world.now + timedelta(seconds=GRACE + 1))
    assert swept == retention.Swept(jobs=1, uploads=1)
    assert not await world.job_exists(old_job) and not await world.upload_exists(old_upload)
    for kept in (new_job, read_job, reader):  # read_job: an active job reads its output
        assert await world.job_exists(kept)
    for kept in (new_upload, read_upload):
        assert await world.upload_exists(kept)
    later = world.now + timedelta(seconds=3 * GRACE)
    assert await retention.sweep(store, settings, later) == retention.Swept()  # idempotent


async def test_a_job_submitted_after_the_mark_keeps_what_it_reads(
    world: World, store: Store, settings: Settings
) -> None:
    """The race the grace period closes: a sweep finds an upload unread and marks it; a job
    that looked the upload up just before is recorded just after."""
    upload, output_of = await world.upload(3), await world.job("COMPLETED", 3)
    assert await retention.sweep(store, settings, world.now) == retention.Swept(marked=2)
    await world.job("ACCEPTED", 0, reads=[Location(UPLOADS, upload),
                                         Location(JOBS, f"{output_of}/out.txt")])  # fmt: skip
    later = world.now + timedelta(seconds=GRACE + 1)
    assert await retention.sweep(store, settings, later) == retention.Swept()
    assert await world.upload_exists(upload) and await world.job_exists(output_of)
    # and they are unmarked: usable again, and only marked anew once unread
    assert (await store.get_file(upload) or {}).get("expiring_at") is None


async def test_nothing_new_may_use_what_is_marked(world: World, store: Store,
                                                  settings: Settings) -> None:  # fmt: skip
    upload, old_job = await world.upload(3), await world.job("COMPLETED", 3)
    lookup = StoreFileLookup(store, settings.uploads_dir, settings.jobs_dir)
    assert await lookup(upload) is not None and await lookup(f"{old_job}/out.txt") is not None
    await retention.sweep(store, settings, world.now)
    assert await lookup(upload) is None
    assert await lookup(f"{old_job}/out.txt") is None


async def test_zero_keeps_everything(tmp_path: Path, mongodb_uri: str, database_name: str,
                                     store: Store) -> None:  # fmt: skip
    settings = make_settings(tmp_path, mongodb_uri, database_name, job_retention=0,
                             upload_retention=0)  # fmt: skip
    world = World(store, settings, utcnow())
    job_id, file_id = await world.job("COMPLETED", 400), await world.upload(400)
    for days in (0, 1, 2):
        later = world.now + timedelta(days=days)
        assert await retention.sweep(store, settings, later) == retention.Swept()
    assert await world.job_exists(job_id) and await world.upload_exists(file_id)


async def test_a_jobs_record_goes_before_its_directory(
    world: World, store: Store, settings: Settings, mongodb_uri: str, database_name: str
) -> None:
    """If deleting the record fails (the database stops answering), the directory stays:
    never a record whose files are gone."""
    old_job = await world.job("COMPLETED", 2)
    await retention.sweep(store, settings, world.now)  # marked
    port = urlsplit(mongodb_uri).port
    assert port is not None
    proxy = ChaosProxy(port)
    flaky = Store(proxy.uri, database_name, retry_seconds=1, timeout_ms=300)
    try:
        proxy.add(named("delete"), "hang")
        with pytest.raises(StoreUnavailableError):
            await retention.sweep(flaky, settings, world.now + timedelta(seconds=GRACE + 1))
        assert (settings.jobs_dir / old_job / "out.txt").exists()
    finally:
        proxy.close()
        await flaky.close()


async def test_a_directory_left_without_a_record_is_removed_later(
    world: World, store: Store, settings: Settings
) -> None:
    orphan, recent, kept = new_id(), new_id(), await world.job("COMPLETED", 0.1)
    for name in (orphan, recent):
        (settings.jobs_dir / name).mkdir()
    long_ago = (world.now - timedelta(days=3)).timestamp()
    for name in (orphan, kept):
        os.utime(settings.jobs_dir / name, (long_ago, long_ago))
    (settings.jobs_dir / "not-a-job").mkdir()
    assert await retention.remove_leftover_dirs(store, settings, world.now) == 1
    assert not (settings.jobs_dir / orphan).exists()
    assert (settings.jobs_dir / recent).exists()  # young: perhaps its record comes next
    assert await world.job_exists(kept)
    assert (settings.jobs_dir / "not-a-job").exists()


async def test_an_upload_that_cannot_be_deleted_keeps_its_record_and_stops_nothing(
    world: World, store: Store, settings: Settings,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    stuck, fine = await world.upload(3), await world.upload(3)
    unlink = Path.unlink

    def read_only_for_one(path: Path, missing_ok: bool = False) -> None:
        if path.name == stuck:  # as on a read-only mount (seen in the bundle's soak)
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        unlink(path, missing_ok)

    monkeypatch.setattr(Path, "unlink", read_only_for_one)
    await retention.sweep(store, settings, world.now)
    swept = await retention.sweep(store, settings, world.now + timedelta(seconds=GRACE + 1))
    assert swept == retention.Swept(uploads=1)
    assert not await world.upload_exists(fine)
    assert await store.get_file(stuck) is not None  # tried again next time
    assert "1 expired files could not be deleted" in caplog.text
