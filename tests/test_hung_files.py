"""A scheduler whose jobs' file system hangs (a network file system whose server went
away): the hung reads delay the jobs that need them, never the scheduler's loop, so its
leases stay renewed and a second scheduler adopts nothing it still follows. The jobs'
folder is a real FUSE file system whose reads hang on demand (tests/hungfs.py); the first
scheduler runs on a loop of its own, as in a process of its own."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.catalogue import load_catalogue
from appliance.runners.memory import MemoryBackend
from appliance.scheduler.core import Scheduler
from appliance.settings import Settings
from appliance.store import Store
from appliance.volumes import Volumes
from tests.helpers import make_settings, submit, wait_final, wait_state, write_probe
from tests.hungfs import HungFiles

pytestmark = pytest.mark.anyio


@dataclass
class Elsewhere:
    """A scheduler running in a thread on an event loop of its own."""

    settings: Settings
    stop: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    scheduler: Scheduler | None = None
    backend: MemoryBackend | None = None

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self.thread.start()
        assert self.started.wait(30)

    async def _main(self) -> None:
        settings = self.settings
        store = Store(settings.mongodb_uri, settings.mongodb_database)
        self.backend = MemoryBackend(Volumes.local(settings), file_timeout=settings.file_timeout)
        self.scheduler = Scheduler(settings, store, load_catalogue(settings),
                                   {"mem": self.backend}, listen=False)  # fmt: skip
        stop = asyncio.Event()
        task = asyncio.create_task(self.scheduler.run(stop))
        self.started.set()
        while not self.stop.is_set():
            await asyncio.sleep(0.05)
        stop.set()
        await task
        await self.backend.close()
        await store.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)


async def test_hung_reads_delay_the_job_never_the_scheduler(
    tmp_path: Path, mongodb_uri: str, database_name: str, store: Store
) -> None:
    lease = 2.0
    with HungFiles(tmp_path / "backing", tmp_path / "mnt") as files:
        settings = make_settings(tmp_path, mongodb_uri, database_name, lease_seconds=lease,
                                 file_timeout=1, jobs_dir=str(tmp_path / "mnt" / "jobs"))  # fmt: skip
        service = write_probe(settings, "mem", backend="memory")
        first = Elsewhere(settings)
        assert first.scheduler is not None and first.backend is not None
        second_backend = MemoryBackend(Volumes.local(settings), file_timeout=1)
        second = Scheduler(settings, store, load_catalogue(settings), {"mem": second_backend})
        stop = asyncio.Event()
        running = None
        try:
            job_id = await submit(store, service, "sleep", "2")
            await wait_state(store, job_id, "RUNNING", timeout=30)
            running = asyncio.create_task(second.run(stop))
            files.hang(6 * lease)  # the job writes its end; nobody can read it
            await asyncio.sleep(4 * lease)
            job = await store.get_job(job_id)
            assert job is not None and job["state"] == "RUNNING", job
            assert job["lease_owner"] == first.scheduler.owner, job  # renewed all along
            assert job["claims"] == 1 and job_id not in second.held
            assert second_backend.submissions == []
            files.release()
            done = await wait_final(store, job_id, timeout=30)
        finally:
            files.release()
            first.close()
            stop.set()
            if running is not None:
                await asyncio.wait_for(running, 60)
            await second_backend.close()
    assert done["state"] == "COMPLETED", done.get("error")
    assert done["claims"] == 1 and first.backend.runs == [job_id]
