"""The local worker pool: restarts, lost jobs, and CURVE authentication on network addresses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest

from appliance.errors import ConfigError, RunnerUnavailableError
from appliance.messaging import CurveKeys, RpcClient, RpcServer, is_private_address
from appliance.plan import Plan, Step, job_location
from appliance.runners.base import RunState, StepRun
from appliance.runners.local import LocalBackend
from appliance.settings import Settings
from appliance.volumes import Volumes
from appliance.worker import BUCKET_SECONDS, KEEP_FINISHED_SECONDS, JobFiles, WorkerJob
from tests.helpers import make_settings, settings_env, wait_for

pytestmark = pytest.mark.anyio


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_worker(settings: Settings, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "appliance", "worker", "--slots", "2", *extra],
        env=settings_env(settings),
    )


@pytest.fixture
def settings(tmp_path: Path, mongodb_uri: str, database_name: str) -> Settings:
    return make_settings(tmp_path, mongodb_uri, database_name)


def spec(settings: Settings, job_id: str, *argv: str) -> StepRun:
    workdir = settings.jobs_dir / job_id
    workdir.mkdir(parents=True, exist_ok=True)
    return StepRun(job_id, Plan(job_location(job_id), (Step(argv),)), service_id="svc")


def local_backend(settings: Settings) -> LocalBackend:
    return LocalBackend(RpcClient(settings.worker_address, timeout=2), Volumes.local(settings))


async def state_of(backend: LocalBackend, handle: str) -> RunState:
    return (await backend.status([handle]))[handle].state


def test_addresses() -> None:
    assert is_private_address("ipc:///tmp/x.sock")
    assert is_private_address("tcp://127.0.0.1:5571")
    assert is_private_address("tcp://localhost:5571")
    assert not is_private_address("tcp://0.0.0.0:5571")
    assert not is_private_address("tcp://10.1.2.3:5571")


async def test_a_job_survives_a_kill_9_of_the_pool(settings: Settings) -> None:
    backend = local_backend(settings)
    worker = start_worker(settings)
    try:
        handle = await wait_for(
            lambda: _submit(backend, spec(settings, "job1", "sh", "-c", "sleep 2; echo done"))
        )
        await wait_for(lambda: _is(backend, handle, RunState.RUNNING))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        with pytest.raises(RunnerUnavailableError):
            await backend.status([handle])
        worker = start_worker(settings)
        status = await wait_for(lambda: _finished(backend, handle), timeout=30)
        assert status.exit_code == 0
        assert (settings.jobs_dir / "job1" / "stdout").read_text() == "done\n"
    finally:
        worker.terminate()
        worker.wait()
        await backend.close()


async def test_a_job_that_died_with_the_pool_is_reported_lost(settings: Settings) -> None:
    backend = local_backend(settings)
    worker = start_worker(settings)
    try:
        handle = await wait_for(lambda: _submit(backend, spec(settings, "job2", "sleep", "60")))
        await wait_for(lambda: _is(backend, handle, RunState.RUNNING))
        state = (settings.jobs_dir / ".worker" / "active" / f"{handle}.json").read_text()
        pid = json.loads(state)["pid"]
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        os.killpg(pid, signal.SIGKILL)  # the job goes too, leaving no record of its end
        await asyncio.sleep(0.2)
        worker = start_worker(settings)
        status = await wait_for(lambda: _lost(backend, handle), timeout=30)
        assert "while the worker pool was down" in status.message
    finally:
        worker.terminate()
        worker.wait()
        await backend.close()


async def test_cancel_a_queued_job_in_the_pool(settings: Settings) -> None:
    backend = local_backend(settings)
    worker = start_worker(settings)  # two slots
    try:
        handles = [
            await wait_for(partial(_submit, backend, spec(settings, f"q{i}", "sleep", "30")))
            for i in range(3)
        ]
        assert await state_of(backend, handles[2]) is RunState.QUEUED
        await backend.cancel(handles[2])
        status = (await backend.status([handles[2]]))[handles[2]]
        assert status.state is RunState.FINISHED and status.exit_code == -signal.SIGTERM
        assert not (settings.jobs_dir / "q2" / "stdout").exists()  # it never started
        for handle in handles[:2]:
            await backend.cancel(handle)
        for handle in handles[:2]:
            await wait_for(partial(_finished, backend, handle), timeout=15)
    finally:
        worker.terminate()
        worker.wait()
        await backend.close()


async def _submit(backend: LocalBackend, job: StepRun) -> str | None:
    try:
        return await backend.submit(job)
    except RunnerUnavailableError:
        return None  # the pool is still starting


async def _is(backend: LocalBackend, handle: str, state: RunState) -> bool:
    return await state_of(backend, handle) is state


async def _finished(backend: LocalBackend, handle: str) -> object:
    try:
        status = (await backend.status([handle]))[handle]
    except RunnerUnavailableError:
        return None
    return status if status.state is RunState.FINISHED else None


async def _lost(backend: LocalBackend, handle: str) -> object:
    try:
        status = (await backend.status([handle]))[handle]
    except RunnerUnavailableError:
        return None
    return status if status.state is RunState.LOST else None


async def test_a_network_address_needs_keys() -> None:
    with pytest.raises(ConfigError, match="CURVE"):
        RpcServer(f"tcp://0.0.0.0:{free_port()}")


async def test_curve_refuses_unauthenticated_and_unknown_peers() -> None:
    server_keys, client_keys, stranger_keys = (
        CurveKeys.generate(),
        CurveKeys.generate(),
        CurveKeys.generate(),
    )
    port = free_port()
    server = RpcServer(
        f"tcp://0.0.0.0:{port}", keys=server_keys, allowed_clients=[client_keys.public]
    )

    async def echo(request: dict[str, object]) -> dict[str, object]:
        return {"pong": request.get("method")}

    serving = asyncio.create_task(server.serve(echo))
    address = f"tcp://127.0.0.1:{port}"
    good = RpcClient(address, server_public=server_keys.public, keys=client_keys, timeout=3)
    plain = RpcClient(address, timeout=1)
    stranger = RpcClient(address, server_public=server_keys.public, keys=stranger_keys, timeout=1)
    try:
        assert (await good.call("ping"))["pong"] == "ping"
        with pytest.raises(RunnerUnavailableError):
            await plain.call("ping")
        with pytest.raises(RunnerUnavailableError):
            await stranger.call("ping")
    finally:
        serving.cancel()
        for client in (good, plain, stranger):
            client.close()
        server.close()


def test_key_files_round_trip(tmp_path: Path) -> None:
    keys = CurveKeys.generate()
    keys.save(tmp_path / "k")
    assert CurveKeys.load(tmp_path / "k") == keys
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError):
        CurveKeys.load(tmp_path / "missing")


async def test_a_finished_job_is_still_known_after_a_restart(settings: Settings) -> None:
    backend = local_backend(settings)
    worker = start_worker(settings)
    try:
        handle = await wait_for(
            lambda: _submit(backend, spec(settings, "done1", "sh", "-c", "exit 4"))
        )
        status = await wait_for(partial(_finished, backend, handle), timeout=15)
        worker.terminate()
        worker.wait()
        worker = start_worker(settings)  # its memory is gone; the job's file is not
        again = await wait_for(partial(_finished, backend, handle), timeout=15)
        assert status.exit_code == again.exit_code == 4
        state = settings.jobs_dir / ".worker"
        assert list((state / "active").iterdir()) == []
        assert [p.name for p in (state / "finished").glob("*/*.json")] == [f"{handle}.json"]
        # A repeated submit is the same (finished) job: it does not run again.
        assert await backend.submit(spec(settings, "done1", "sh", "-c", "exit 5")) == handle
        assert (await backend.status([handle]))[handle].exit_code == 4
    finally:
        worker.terminate()
        worker.wait()
        await backend.close()


def test_finished_jobs_are_pruned_an_hour_at_a_time(tmp_path: Path) -> None:
    files = JobFiles(tmp_path)
    now = time.time()
    for age_hours in (0, 5, 23, 25, 30):
        job = WorkerJob(f"j{age_hours}", "/x", ["true"], {}, state="finished",
                        ended_at=now - age_hours * BUCKET_SECONDS)  # fmt: skip
        files.finish(job)
    assert files.prune(now) == 2  # the folders of 25 and 30 hours ago
    kept = sorted(p.stem for p in (tmp_path / "finished").glob("*/*.json"))
    assert kept == ["j0", "j23", "j5"]
    assert files.find_finished("j23", now) is not None
    assert files.find_finished("j30", now) is None
    assert KEEP_FINISHED_SECONDS == 24 * BUCKET_SECONDS
