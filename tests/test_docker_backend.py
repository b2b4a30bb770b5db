"""The docker backend and the scheduler against a real Docker engine and MongoDB."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import pytest

from appliance.catalogue import Catalogue, load_catalogue
from appliance.forms import FileRef, validate
from appliance.jobrecord import JobRecord
from appliance.plan import UPLOADS, Location, plan_mapping
from appliance.planning import Planner
from appliance.runners.config import create_backend
from appliance.runners.docker import DockerBackend
from appliance.runners.docker.engine import EngineError
from appliance.runners.docker.waiting import Waiting, WaitingJobs, waiting_path
from appliance.scheduler.core import Scheduler
from appliance.scheduler.housekeeping import Housekeeping
from appliance.scheduler.starting import submitted_timestamp
from appliance.settings import Settings
from appliance.store import Store
from appliance.submission import record_job
from tests.helpers import (
    TEST_IMAGE,
    build_test_image,
    make_settings,
    settings_env,
    wait_final,
    wait_for,
    wait_state,
)

pytestmark = pytest.mark.anyio
KNOWN_USER_IMAGE = "appliance-test/known-user:local"

SERVICES = {
    "inspect": f"""\
appliance-version: 1
name: Inspectable
image: {TEST_IMAGE}
resources: {{memory: 64M, cpus: 0.5, pids: 32, time-limit: 1h}}
parameters:
  input: {{name: Input, type: file}}
  seconds: {{name: Seconds, type: integer, default: 0}}
command: sh -c 'cat inputs/input > copy.txt; id -u > uid.txt; sleep "$0"'
args:
  seconds: {{arg: "$(value)"}}
outputs:
  copy: {{path: copy.txt, media-type: text/plain}}
""",
    "once": f"""\
appliance-version: 1
name: Counts its runs
image: {TEST_IMAGE}
parameters:
  seconds: {{name: Seconds, type: integer, default: 0}}
command: sh -c 'echo run >> runs.txt; sleep "$0"'
args:
  seconds: {{arg: "$(value)"}}
""",
    "hungry": f"""\
appliance-version: 1
name: Eats memory
image: {TEST_IMAGE}
resources: {{memory: 32M}}
command: sh -c 'x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo done'
""",
    "talker": f"""\
appliance-version: 1
name: Talks while it runs
image: {TEST_IMAGE}
command: sh -c 'echo first; echo oops >&2; sleep 5; echo second'
""",
    "whoami": f"""\
appliance-version: 1
name: Says who it is
image: {TEST_IMAGE}
command: sh -c 'id -un > who.txt; echo "$$HOME $$USER" >> who.txt; touch "$$HOME/written"'
""",
    "whoami-known": f"""\
appliance-version: 1
name: Says who it is, in an image that knows its user
image: {KNOWN_USER_IMAGE}
command: sh -c 'id -un > who.txt; echo "$$HOME" >> who.txt'
""",
    "noimage": """\
appliance-version: 1
name: Missing image
image: appliance-test/does-not-exist:0
command: "true"
""",
}


def docker_json(*args: str) -> Any:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def containers_of(instance: str) -> list[str]:
    result = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", f"label=appliance.instance={instance}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout.split()


async def containers_left(instance: str, within: float = 10.0) -> list[str]:
    """This instance's containers once none is left, or after ``within`` seconds: a
    finished job's container is removed just after its end is recorded, not before."""
    deadline = time.monotonic() + within
    while (left := containers_of(instance)) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return left


@pytest.fixture
def settings(tmp_path: Path, mongodb_uri: str, database_name: str) -> Iterator[Settings]:
    build_test_image(tmp_path)
    settings = make_settings(tmp_path, mongodb_uri, database_name)
    (settings.runners_dir / "docker.yaml").write_text(
        "backend: docker\nlimits: {user: '1000:1000', network: false}\n"
        "options: {stop_grace: 3, live_output: 0.3}\n"
    )
    for name, text in SERVICES.items():
        (settings.services_dir / f"{name}.service.yaml").write_text(text)
    yield settings
    for container in containers_of(settings.instance):
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)


@pytest.fixture
async def catalogue(settings: Settings) -> Catalogue:
    catalogue = load_catalogue(settings)
    assert catalogue.errors == []
    return catalogue


@pytest.fixture
async def scheduler(
    settings: Settings, store: Store, catalogue: Catalogue
) -> AsyncIterator[Scheduler]:
    backend = create_backend(catalogue.runners["docker"], settings)
    scheduler = Scheduler(settings, store, catalogue, {"docker": backend})
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    yield scheduler
    stop.set()
    await asyncio.wait_for(task, 60)
    await backend.close()


async def submit(
    store: Store, catalogue: Catalogue, service: str, raw: dict[str, list[Any]]
) -> str:
    svc = catalogue.services[service]
    job = await record_job(store, Planner(catalogue.runners, {}), svc, await validate(svc, raw))
    return str(job["_id"])


def input_file(settings: Settings, text: str = "the input\n") -> FileRef:
    path = settings.uploads_dir / "upload1"
    path.write_text(text)
    return FileRef("upload1", path, "in.txt", location=Location(UPLOADS, "upload1"))


async def test_the_container_is_locked_down(
    settings: Settings, store: Store, catalogue: Catalogue, scheduler: Scheduler
) -> None:
    job_id = await submit(
        store, catalogue, "inspect", {"input": [input_file(settings)], "seconds": ["60"]}
    )
    await wait_state(store, job_id, "RUNNING", timeout=60)
    [info] = docker_json("inspect", f"{settings.instance}-{job_id}")
    host = info["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["CapDrop"] == ["ALL"]
    assert host["CapAdd"] is None
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["ReadonlyRootfs"] is True
    assert host["Memory"] == 64 * 1024**2
    assert host["MemorySwap"] == 64 * 1024**2
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 32
    assert host["Init"] is True
    assert "/tmp" in host["Tmpfs"]
    assert host["Privileged"] is False
    assert info["Config"]["User"] == "1000:1000"
    assert info["Config"]["WorkingDir"] == "/job"
    assert info["Config"]["Labels"]["appliance.job"] == job_id
    assert info["Config"]["Labels"]["appliance.instance"] == settings.instance
    assert not any(
        e.startswith("APPLIANCE_") or e.startswith("MONGODB") for e in info["Config"]["Env"]
    )
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert mounts["/job"]["RW"] is True
    assert mounts["/job"]["Source"] == str(settings.jobs_dir / job_id)
    assert mounts["/job/inputs/input"]["RW"] is False
    assert mounts["/job/inputs/input"]["Source"] == str(settings.uploads_dir / "upload1")
    # and the name of its user, read-only, from beside its directory (identity.py)
    assert set(mounts) == {"/job", "/job/inputs/input", "/etc/passwd", "/etc/group"}
    for name in ("passwd", "group"):
        assert mounts[f"/etc/{name}"]["RW"] is False
        assert mounts[f"/etc/{name}"]["Source"] == str(
            settings.jobs_dir / ".records" / job_id / name
        )
    await store.request_cancel(job_id)
    job = await wait_final(store, job_id, timeout=30)
    assert job["state"] == "INTERRUPTED"
    assert await containers_left(settings.instance) == []


def build_known_user_image(tmp_path: Path) -> None:
    """The test image with a passwd of its own that names uid 1000."""
    context = tmp_path / "known-user"
    context.mkdir()
    (context / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                    "worker:x:1000:1000::/home/worker:/bin/sh\n")  # fmt: skip
    (context / "Dockerfile").write_text(f"FROM {TEST_IMAGE}\nCOPY passwd /etc/passwd\n")
    subprocess.run(["docker", "build", "-q", "-t", KNOWN_USER_IMAGE, str(context)], check=True,
                   capture_output=True)  # fmt: skip


async def test_the_jobs_user_has_a_name_and_a_home_where_its_image_has_none(
    settings: Settings, store: Store, catalogue: Catalogue, scheduler: Scheduler, tmp_path: Path
) -> None:
    """The test image has no /etc/passwd: the job's uid gets one (read-only) and HOME;
    an image that names the uid keeps its own. Both run as 1000, locked down."""
    build_known_user_image(tmp_path)
    job_id = await submit(store, catalogue, "whoami", {})
    job = await wait_final(store, job_id, timeout=60)
    assert job["state"] == "COMPLETED", job.get("error")
    assert (settings.jobs_dir / job_id / "who.txt").read_text() == "appliance\n/tmp appliance\n"
    known = await submit(store, catalogue, "whoami-known", {})
    job = await wait_final(store, known, timeout=60)
    assert job["state"] == "COMPLETED", job.get("error")
    assert (settings.jobs_dir / known / "who.txt").read_text() == "worker\n/home/worker\n"


async def test_outputs_belong_to_the_job_user_and_inputs_are_read_only(
    settings: Settings, store: Store, catalogue: Catalogue, scheduler: Scheduler
) -> None:
    job_id = await submit(
        store, catalogue, "inspect", {"input": [input_file(settings, ">x\nMKV\n")]}
    )
    job = await wait_final(store, job_id, timeout=60)
    assert job["state"] == "COMPLETED", job
    workdir = settings.jobs_dir / job_id
    assert (workdir / "copy.txt").read_text() == ">x\nMKV\n"
    assert (workdir / "uid.txt").read_text().strip() == "1000"
    assert (workdir / "copy.txt").stat().st_uid == 1000
    assert [o["path"] for o in job["outputs"] if o["id"] == "copy"] == ["copy.txt"]
    assert (settings.uploads_dir / "upload1").read_text() == ">x\nMKV\n"  # untouched
    # Stored as a reference, resolved to a location in the plan: never a path of a machine.
    assert job["values"]["input"] == {
        "file": {"id": "upload1", "label": "in.txt", "media_type": ""}
    }
    source = {"volume": "uploads", "path": "upload1"}
    assert plan_mapping(job["plan"])["inputs"] == [{"source": source, "path": "inputs/input",
                                                    "parameter": "input"}]  # fmt: skip
    assert str(settings.uploads_dir) not in str(job["plan"]) + str(job["values"])
    assert await containers_left(settings.instance) == []  # removed once finished


async def test_a_running_jobs_output_appears_in_its_directory_as_it_comes(
    settings: Settings, store: Store, catalogue: Catalogue, scheduler: Scheduler
) -> None:
    job_id = await submit(store, catalogue, "talker", {})
    stdout = settings.jobs_dir / job_id / "stdout"
    stderr = settings.jobs_dir / job_id / "stderr"
    seen, said = "", ""
    for _ in range(100):  # the job sleeps 5 s after its first lines
        seen = stdout.read_text() if stdout.exists() else ""
        said = stderr.read_text() if stderr.exists() else ""
        if seen and said:  # the two streams arrive separately: wait for both
            break
        await asyncio.sleep(0.1)
    job = await store.get_job(job_id)
    assert job is not None and job["state"] == "RUNNING"  # seen while it still runs
    assert seen == "first\n"
    assert said == "oops\n"
    done = await wait_final(store, job_id, timeout=60)
    assert done["state"] == "COMPLETED"
    assert stdout.read_text() == "first\nsecond\n"  # the whole, once: nothing doubled


async def test_out_of_memory_fails_with_a_reason(
    store: Store, catalogue: Catalogue, scheduler: Scheduler
) -> None:
    job = await wait_final(store, await submit(store, catalogue, "hungry", {}), timeout=60)
    assert job["state"] == "FAILED", job
    assert "out of memory" in str(job["error"])


async def test_a_missing_image_is_an_error_with_a_reason(
    store: Store, catalogue: Catalogue, scheduler: Scheduler
) -> None:
    job = await wait_final(store, await submit(store, catalogue, "noimage", {}), timeout=60)
    assert job["state"] == "ERROR"
    assert "appliance-test/does-not-exist:0" in str(job["error"]) and "not available" in str(
        job["error"]
    )


async def test_an_unreachable_engine_retries_then_fails_with_a_reason(
    settings: Settings, store: Store, catalogue: Catalogue, tmp_path: Path
) -> None:
    (settings.runners_dir / "docker.yaml").write_text(
        f"backend: docker\noptions: {{base_url: 'unix://{tmp_path}/no.sock'}}\n"
    )
    catalogue = load_catalogue(settings)
    backend = create_backend(catalogue.runners["docker"], settings)
    scheduler = Scheduler(settings, store, catalogue, {"docker": backend}, submit_retry_seconds=2)
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:
        job = await wait_final(store, await submit(store, catalogue, "once", {}), timeout=30)
    finally:
        stop.set()
        await task
    assert job["state"] == "ERROR"
    assert "unreachable" in str(job["error"])
    assert job["attempts"] >= 2


def scheduler_process(settings: Settings, **changes: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "appliance", "scheduler"], env=settings_env(settings, **changes)
    )


async def test_kill_9_and_restart_every_job_finishes_exactly_once(
    settings: Settings, store: Store, catalogue: Catalogue
) -> None:
    first = scheduler_process(settings)
    try:
        ids = [await submit(store, catalogue, "once", {"seconds": ["4"]}) for _ in range(4)]
        for job_id in ids:
            await wait_state(store, job_id, "RUNNING", timeout=60)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    second = scheduler_process(settings)
    try:
        jobs = [await wait_final(store, job_id, timeout=90) for job_id in ids]
    finally:
        second.terminate()
        assert second.wait(30) == 0
    assert [j["state"] for j in jobs] == ["COMPLETED"] * 4
    for job_id in ids:
        assert (settings.jobs_dir / job_id / "runs.txt").read_text() == "run\n"
    assert all(j["lease_gen"] == 2 for j in jobs)  # each was adopted once
    assert await containers_left(settings.instance) == []


async def test_two_scheduler_processes_never_run_a_job_twice(
    settings: Settings, store: Store, catalogue: Catalogue, tmp_path: Path
) -> None:
    one = scheduler_process(settings)
    two = scheduler_process(settings, scheduler_address=f"ipc://{tmp_path}/second.sock")
    try:
        ids = [await submit(store, catalogue, "once", {}) for _ in range(16)]
        jobs = [await wait_final(store, job_id, timeout=120) for job_id in ids]
    finally:
        for process in (one, two):
            process.terminate()
        assert one.wait(30) == 0 and two.wait(30) == 0
    assert [j["state"] for j in jobs] == ["COMPLETED"] * 16
    for job_id in ids:
        assert (settings.jobs_dir / job_id / "runs.txt").read_text() == "run\n"
    assert await containers_left(settings.instance) == []


async def test_leftover_containers_are_removed(
    settings: Settings, store: Store, catalogue: Catalogue, scheduler: Scheduler
) -> None:
    stray = f"{settings.instance}-strayjob"
    subprocess.run(["docker", "create", "--name", stray, "--label", f"appliance.instance={settings.instance}",
                    "--label", "appliance.job=nosuchjob", TEST_IMAGE, "true"], check=True, capture_output=True)  # fmt: skip
    await Housekeeping(scheduler).remove_orphans()
    assert containers_of(settings.instance) == []


@contextlib.asynccontextmanager
async def slotted_scheduler(
    settings: Settings, store: Store, slots: int
) -> AsyncIterator[tuple[Catalogue, Scheduler]]:
    """A scheduler whose docker runner has ``slots`` slots, running until the block ends."""
    (settings.runners_dir / "docker.yaml").write_text(
        f"backend: docker\nlimits: {{user: '1000:1000'}}\noptions: {{stop_grace: 3, slots: {slots}}}\n"
    )
    catalogue = load_catalogue(settings)
    backend = create_backend(catalogue.runners["docker"], settings)
    scheduler = Scheduler(settings, store, catalogue, {"docker": backend})
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:
        yield catalogue, scheduler
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await backend.close()


async def test_slots_cap_running_containers_and_a_waiting_job_can_be_cancelled(
    settings: Settings, store: Store
) -> None:
    async with slotted_scheduler(settings, store, 2) as (catalogue, scheduler):
        ids = [await submit(store, catalogue, "once", {"seconds": ["6"]}) for _ in range(5)]
        await wait_state(store, ids[0], "RUNNING", timeout=60)
        most = 0
        for _ in range(20):  # while the first ones run, the rest wait (no container yet)
            running = subprocess.run(
                ["docker", "ps", "-q", "--filter", f"label=appliance.instance={settings.instance}"],
                capture_output=True, text=True, check=True,
            ).stdout.split()  # fmt: skip
            most = max(most, len(running))
            await asyncio.sleep(0.1)

        async def for_a_slot() -> JobRecord | None:  # and it says so
            job = await store.get_job(ids[4])
            return job if ((job or {}).get("waiting") or {}).get("reason") == "slot" else None

        waiting = await wait_for(for_a_slot, timeout=10)
        assert waiting["state"] == "QUEUED"
        assert waiting["waiting"]["message"] == "waiting for one of runner docker's 2 slots"
        await store.request_cancel(ids[4])
        scheduler.poke.set()
        jobs = [await wait_final(store, job_id, timeout=90) for job_id in ids]
    assert most == 2
    assert [j["state"] for j in jobs] == ["COMPLETED"] * 4 + ["INTERRUPTED"]
    assert not (settings.jobs_dir / ids[4] / "runs.txt").exists()  # it never ran
    for job_id in ids[:4]:
        assert (settings.jobs_dir / job_id / "runs.txt").read_text() == "run\n"
    assert await containers_left(settings.instance) == []


async def test_a_slot_is_freed_even_when_the_death_of_its_container_went_unheard(
    settings: Settings, store: Store
) -> None:
    """The slots in use are counted without asking the engine; a container that vanished
    while its death notice was lost must not hold its slot for ever: the next status
    round's list of containers corrects the count."""
    async with slotted_scheduler(settings, store, 1) as (catalogue, scheduler):
        backend = scheduler.backends["docker"]
        assert isinstance(backend, DockerBackend)
        backend.events.on_death = lambda name: None  # every death notice lost
        first = await submit(store, catalogue, "once", {"seconds": ["60"]})
        await wait_state(store, first, "RUNNING", timeout=60)
        [container] = containers_of(settings.instance)
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=True)
        second = await submit(store, catalogue, "once", {"seconds": ["0"]})
        job = await wait_final(store, second, timeout=60)
        assert job["state"] == "COMPLETED"
        assert (await wait_final(store, first, timeout=30))["state"] != "COMPLETED"


async def test_a_container_started_after_the_list_was_taken_is_not_called_lost(
    settings: Settings, store: Store, catalogue: Catalogue, scheduler: Scheduler
) -> None:
    """A status round lists the engine's containers, then reads each job's status from
    that list: a container created and started after the list was taken is not in it,
    and has left the backend's "being started" set by then. Such a job must not end
    LOST; here every round's first list is one taken before any container existed."""
    backend = scheduler.backends["docker"]
    assert isinstance(backend, DockerBackend)
    real, lists = backend._list, 0

    def first_from_before() -> tuple[dict[str, Any], float]:
        nonlocal lists
        lists += 1
        listed, at = real()
        return ({}, at) if lists % 2 else (listed, at)  # odd: a round's first list

    backend._list = first_from_before  # type: ignore[method-assign]
    job_id = await submit(store, catalogue, "once", {"seconds": ["2"]})
    job = await wait_final(store, job_id, timeout=60)
    assert job["state"] == "COMPLETED", job.get("error")
    assert (settings.jobs_dir / job_id / "runs.txt").read_text() == "run\n"
    assert lists >= 4  # rounds while it ran and when it ended each looked twice


def test_waiting_jobs_go_in_submission_order_and_survive_a_restart(tmp_path: Path) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    queue = WaitingJobs()
    for name, seconds in (("c", 10.0), ("a", 1.0), ("b", 9.000005)):
        (tmp_path / name).mkdir()
        at = submitted_timestamp({"submitted_at": base + timedelta(seconds=seconds)})
        queue.add(Waiting(name, tmp_path / name, at, {"name": name, "image": "x"}))
    assert [job.name for job in queue.take(2)] == ["a", "b"]
    marker = json.loads(waiting_path(tmp_path / "c", 0).read_text())
    assert set(marker) == {"name", "submitted_at"}  # no container options in a file
    restarted = WaitingJobs()  # a new process: the options come from the job's plan again
    remade = {"name": "c", "image": "remade"}
    assert restarted.recover("c", tmp_path / "c", 0, remade, 10.0)
    assert not restarted.recover("a", tmp_path / "x", 0, remade, 1.0)
    [job] = restarted.take(5)
    assert job.options == remade and len(restarted) == 0
    assert restarted.drop("c", tmp_path / "c")  # cancelled while waiting: forgotten
    assert not waiting_path(tmp_path / "c", 0).exists()
    naive = datetime(2026, 1, 1, 0, 0, 1)  # pymongo hands back naive UTC times
    assert submitted_timestamp({"submitted_at": naive}) == base.timestamp() + 1
    assert submitted_timestamp({}) == 0.0


async def test_a_forged_waiting_marker_cannot_choose_the_container(
    settings: Settings, store: Store
) -> None:
    """A job left waiting for a slot is made again from its stored plan when the next
    scheduler adopts it: whatever its marker file says (here: run as root, with the
    host's /etc mounted and another command) is not read."""
    async with slotted_scheduler(settings, store, 1) as (catalogue, _):
        first = await submit(store, catalogue, "once", {"seconds": ["3"]})
        waiting = await submit(store, catalogue, "inspect", {"input": [input_file(settings)]})
        await wait_state(store, first, "RUNNING", timeout=60)
        await wait_state(store, waiting, "QUEUED", timeout=30)
    marker = waiting_path(settings.jobs_dir / waiting, 0)
    forged = {"name": f"{settings.instance}-{waiting}", "submitted_at": 0.0, "options": {
        "name": f"{settings.instance}-{waiting}", "image": TEST_IMAGE, "user": "0:0",
        "entrypoint": ["sh", "-c"], "command": ["id -u > /job/uid.txt; cat /host/hostname > /job/copy.txt"],
        "mounts": [{"Target": "/host", "Source": "/etc", "Type": "bind", "ReadOnly": True},
                   {"Target": "/job", "Source": str(settings.jobs_dir / waiting), "Type": "bind",
                    "ReadOnly": False}],
        "labels": {"appliance.instance": settings.instance, "appliance.job": waiting}}}  # fmt: skip
    marker.write_text(json.dumps(forged))
    async with slotted_scheduler(settings, store, 1):
        job = await wait_final(store, waiting, timeout=90)
    assert job["state"] == "COMPLETED", job.get("error")
    workdir = settings.jobs_dir / waiting
    assert (workdir / "uid.txt").read_text().strip() == "1000"  # its own user, from the plan
    assert (workdir / "copy.txt").read_text() == "the input\n"  # its own command and input
    assert not marker.exists()


async def test_jobs_waiting_for_a_slot_survive_a_scheduler_restart(
    settings: Settings, store: Store
) -> None:
    ids: list[str] = []
    async with slotted_scheduler(settings, store, 1) as (catalogue, _):
        ids = [await submit(store, catalogue, "once", {"seconds": ["4"]}) for _ in range(3)]
        await wait_state(store, ids[0], "RUNNING", timeout=60)
        for job_id in ids[1:]:  # claimed and handed to the backend, which keeps them waiting
            await wait_state(store, job_id, "QUEUED", timeout=30)
        assert (await store.get_job(ids[0]) or {})["state"] == "RUNNING"
        assert len(containers_of(settings.instance)) == 1  # none for the waiting ones
    async with slotted_scheduler(settings, store, 1):  # finds the queue the first one left
        jobs = [await wait_final(store, job_id, timeout=90) for job_id in ids]
    assert [j["state"] for j in jobs] == ["COMPLETED"] * 3
    for job_id in ids:
        assert (settings.jobs_dir / job_id / "runs.txt").read_text() == "run\n"
        assert not waiting_path(settings.jobs_dir / job_id, 0).exists()
    assert await containers_left(settings.instance) == []


async def test_the_backends_memory_of_containers_stays_bounded(
    settings: Settings, store: Store, catalogue: Catalogue, scheduler: Scheduler
) -> None:
    backend = scheduler.backends["docker"]
    assert isinstance(backend, DockerBackend)
    ids = [await submit(store, catalogue, "once", {}) for _ in range(6)]
    jobs = [await wait_final(store, i, timeout=60) for i in ids]
    assert [j["state"] for j in jobs] == ["COMPLETED"] * 6
    # Deaths of containers it never follows (another scheduler's, say) and starts it has
    # forgotten to clear: one status round forgets every name the engine no longer lists.
    backend._died.update(f"{settings.instance}-ghost{i}" for i in range(1000))
    backend._started.update(f"{settings.instance}-gone{i}" for i in range(1000))
    await backend.status([f"{settings.instance}-nosuchjob0000000"])
    await wait_for(lambda: _empty(backend), timeout=10)


async def _empty(backend: DockerBackend) -> bool:
    await backend.status([f"{backend.instance}-nosuchjob0000000"])
    return not backend._died and not backend._started and not backend._removing


async def test_a_start_the_engine_never_took_is_made_again(
    settings: Settings, store: Store, catalogue: Catalogue, scheduler: Scheduler, tmp_path: Path
) -> None:
    """The engine goes away between creating a job's container and starting it (a
    restart, as in test_faults): the start fails, the scheduler submits the job again,
    finds the container created, and must start it then. A claim kept from the failed
    start once left such a job QUEUED for good. The failed start is made by a real client
    whose engine is gone (its socket does not exist), exactly what a restart looks like."""
    backend = scheduler.backends["docker"]
    assert isinstance(backend, DockerBackend)
    start = backend._start
    failed: list[str] = []

    def start_once_the_engine_is_gone(container: Any) -> None:
        if not failed:
            failed.append(container.name)
            gone = docker.DockerClient(base_url=f"unix://{tmp_path}/no-engine.sock",
                                       version="1.41")  # fmt: skip
            container = gone.containers.prepare_model(container.attrs)
        start(container)

    backend._start = start_once_the_engine_is_gone  # type: ignore[method-assign]
    job_id = await submit(store, catalogue, "once", {})
    job = await wait_final(store, job_id, timeout=60)
    assert failed, "the start never failed: the test did not test anything"
    assert job["state"] == "COMPLETED"
    assert (settings.jobs_dir / job_id / "runs.txt").read_text() == "run\n"  # once


async def test_a_container_removed_behind_the_schedulers_back_ends_with_the_reason(
    settings: Settings, store: Store, catalogue: Catalogue, scheduler: Scheduler
) -> None:
    job_id = await submit(store, catalogue, "once", {"seconds": ["60"]})
    await wait_state(store, job_id, "RUNNING", timeout=60)
    subprocess.run(["docker", "rm", "-f", f"{settings.instance}-{job_id}"], check=True,
                   capture_output=True)  # fmt: skip
    removed = time.monotonic()
    job = await wait_final(store, job_id, timeout=settings.lost_after)
    assert time.monotonic() - removed < settings.lost_after
    assert job["state"] == "ERROR" and "its container is gone" in str(job["error"])
    assert (settings.jobs_dir / job_id / "runs.txt").read_text() == "run\n"


async def test_a_job_lost_while_no_scheduler_ran_ends_soon_after_the_next_start(
    settings: Settings, store: Store, catalogue: Catalogue
) -> None:
    """Its scheduler stopped (a running job is left for the next one), the container was
    removed meanwhile: the next scheduler adopts it and ends it with the reason."""
    backend = create_backend(catalogue.runners["docker"], settings)
    first = Scheduler(settings, store, catalogue, {"docker": backend})
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    job_id = await submit(store, catalogue, "once", {"seconds": ["60"]})
    await wait_state(store, job_id, "RUNNING", timeout=60)
    stop.set()
    await asyncio.wait_for(task, 60)
    await backend.close()
    subprocess.run(["docker", "rm", "-f", f"{settings.instance}-{job_id}"], check=True,
                   capture_output=True)  # fmt: skip
    backend = create_backend(catalogue.runners["docker"], settings)
    second = Scheduler(settings, store, catalogue, {"docker": backend})
    stop = asyncio.Event()
    task = asyncio.create_task(second.run(stop))
    started = time.monotonic()
    try:
        job = await wait_final(store, job_id, timeout=settings.lost_after)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await backend.close()
    assert time.monotonic() - started < settings.lost_after
    assert job["state"] == "ERROR" and "its container is gone" in str(job["error"])
    assert job["claims"] == 2  # taken once by each scheduler, run once
    assert (settings.jobs_dir / job_id / "runs.txt").read_text() == "run\n"


@pytest.mark.parametrize(
    "explanation",
    ["task {id}: already exists", "transport is closing: unavailable",
     "failed to update store for object type *libnetwork.endpoint: open : no such file"],
)  # fmt: skip
async def test_a_start_the_engine_took_and_failed_ends_the_job_never_run_twice(
    settings: Settings, store: Store, catalogue: Catalogue, scheduler: Scheduler,
    explanation: str,
) -> None:  # fmt: skip
    """What the engine answers to a start while it stops or after a restart. It may have
    run the command (its record can still say "created"): in CI a job started again after
    "transport is closing" ran twice. The job ends in ERROR at once, saying why, and is
    never started again (nor left ACCEPTED for the 5-minute retry limit)."""
    backend = scheduler.backends["docker"]
    assert isinstance(backend, DockerBackend)
    engine = backend._engine

    def start_as_the_engine_stops(container: str) -> None:
        raise EngineError(500, explanation.format(id=container), "start container")

    engine.start = start_as_the_engine_stops  # type: ignore[method-assign]
    began = time.monotonic()
    job_id = await submit(store, catalogue, "once", {})
    job = await wait_final(store, job_id, timeout=60)
    assert time.monotonic() - began < 30
    assert job["state"] == "ERROR" and "may have run, so it is not started again" in str(
        job["error"]
    )
    assert not (settings.jobs_dir / job_id / "runs.txt").exists()


async def test_the_engine_tells_when_an_image_is_tagged_anew(
    settings: Settings, catalogue: Catalogue
) -> None:
    """Reuse trusts what an image is only while a scheduler keeps checking it: the engine's
    image events make the check come at once when a tag moves (a rebuilt image)."""
    backend = create_backend(catalogue.runners["docker"], settings)
    assert isinstance(backend, DockerBackend)
    tag = f"appliance-test/retagged:{settings.instance}"
    try:
        await backend.images_changed(0.5)  # the stream is open from here on
        waiting = asyncio.create_task(backend.images_changed(60))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        started = time.monotonic()
        subprocess.run(["docker", "tag", TEST_IMAGE, tag], capture_output=True, check=True)
        await asyncio.wait_for(waiting, 10)
        assert time.monotonic() - started < 5
        assert await backend.image_id(tag) == await backend.image_id(TEST_IMAGE)
    finally:
        subprocess.run(["docker", "rmi", tag], capture_output=True)
        await backend.close()
