"""One behavioural suite, run over every backend: memory, docker (a real engine), local
(a real ``appliance worker`` process) and slurm in both its modes (a real single-node
SLURM cluster that scripts/test starts). The scheduler and MongoDB are real in all."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.catalogue import Catalogue, load_catalogue
from appliance.exits import record_dir
from appliance.model import Resources
from appliance.plan import Plan, Step, job_location
from appliance.runners.base import Backend
from appliance.runners.config import create_backend
from appliance.scheduler.core import Scheduler
from appliance.settings import Settings
from appliance.store import Store, new_id
from tests import kube
from tests.helpers import (
    FINAL,
    TEST_IMAGE,
    build_test_image,
    insert_planned,
    make_settings,
    settings_env,
    slurm_available,
    submit,
    wait_final,
    wait_state,
    write_probe,
)

pytestmark = pytest.mark.anyio

BACKENDS = ["memory", "docker", "local", "slurm", "slurm-docker", "kubernetes"]
# runner id -> (backend, options)
RUNNERS = {
    "memory": ("memory", "{}"),
    "docker": ("docker", "{stop_grace: 5, slots: 2}"),
    "local": ("local", "{}"),
    "slurm": ("slurm", "{}"),
    "slurm-docker": ("slurm", "{mode: docker}"),
    "kubernetes": ("kubernetes", ""),  # options made by the rig (its claims)
}
SLOTS = 2  # the docker runner's slots and the worker pool's, in this suite


@contextlib.contextmanager
def worker_process(settings: Settings, slots: int = 4) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance", "worker", "--slots", str(slots)],
        env=settings_env(settings),
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(10)


@dataclass
class Rig:
    kind: str
    settings: Settings
    catalogue: Catalogue
    backend: Backend
    scheduler: Scheduler
    stop: asyncio.Event
    task: asyncio.Task[None]


@pytest.fixture(params=BACKENDS)
async def rig(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    mongodb_uri: str,
    database_name: str,
    store: Store,
) -> AsyncIterator[Rig]:
    kind: str = request.param
    settings = make_settings(tmp_path, mongodb_uri, database_name)
    backend_name, options = RUNNERS[kind]
    if backend_name == "slurm":
        slurm_available()
    claims: dict[str, str] = {}
    if kind == "kubernetes":
        kube.cluster()
        kube.ensure_namespace()
        claims = kube.bind_claims(settings.instance, {"jobs": settings.jobs_dir,
                                                      "uploads": settings.uploads_dir})  # fmt: skip
        options = (f"{{namespace: {kube.NAMESPACE}, image_pull_policy: Never, stop_grace: 5, "
                   f"claims: {{jobs: {claims['jobs']}, uploads: {claims['uploads']}}}}}")  # fmt: skip
    write_probe(settings, kind, time_limit="1h", backend=backend_name, options=options)
    if kind in ("docker", "slurm-docker", "kubernetes"):
        build_test_image(tmp_path)
    if kind == "kubernetes":
        kube.import_image(TEST_IMAGE)
    catalogue = load_catalogue(settings)
    assert catalogue.errors == []
    backend = create_backend(catalogue.runners[kind], settings)
    with contextlib.ExitStack() as stack:
        if kind == "local":
            stack.enter_context(worker_process(settings, slots=SLOTS))
        scheduler = Scheduler(settings, store, catalogue, {kind: backend})
        stop = asyncio.Event()
        task = asyncio.create_task(scheduler.run(stop))
        yield Rig(kind, settings, catalogue, backend, scheduler, stop, task)
        stop.set()
        await asyncio.wait_for(task, 60)
        await backend.close()
        if claims:
            kube.kubectl("-n", kube.NAMESPACE, "delete", "jobs", "-l",
                         f"appliance.instance={settings.instance}", "--wait=false", check=False)  # fmt: skip
            kube.release_claims(claims)


async def test_echo_completes_and_keeps_stdout(rig: Rig, store: Store) -> None:
    job_id = await submit(store, rig.catalogue.services["probe"], "echo", "hello", "$(id) ; `x`")
    job = await wait_final(store, job_id, timeout=60)
    assert job["state"] == "COMPLETED", job
    assert job["exit_code"] == 0
    workdir = rig.settings.jobs_dir / job_id
    assert (workdir / "stdout").read_text() == "hello $(id) ; `x`\n"
    assert {o["path"] for o in job["outputs"]} == {"stdout", "stderr"}


async def test_outputs_are_recorded(rig: Rig, store: Store) -> None:
    job_id = await submit(
        store, rig.catalogue.services["probe"], "touch", "a.txt", "b.txt", "c.log"
    )
    job = await wait_final(store, job_id, timeout=60)
    assert job["state"] == "COMPLETED", job
    made = sorted(o["path"] for o in job["outputs"] if o["id"] == "made")
    assert made == ["a.txt", "b.txt"]
    assert (rig.settings.jobs_dir / job_id / "c.log").exists()  # made, but no output matches it


async def test_a_failing_command_fails(rig: Rig, store: Store) -> None:
    job = await wait_final(store, await submit(store, rig.catalogue.services["probe"], "false"), 60)
    assert job["state"] == "FAILED"
    assert job["exit_code"] == 1
    where = f"its stderr is the file stderr (/api/jobs/{job['_id']}/files/stderr)"
    assert where in str(job["error"])


async def test_a_missing_program_is_an_error(rig: Rig, store: Store) -> None:
    job = await wait_final(
        store, await submit(store, rig.catalogue.services["probe"], "missing"), 60
    )
    assert job["state"] == "ERROR"
    assert job["exit_code"] == 127


async def test_cancel_a_running_job(rig: Rig, store: Store) -> None:
    job_id = await submit(store, rig.catalogue.services["probe"], "sleep", "120")
    await wait_state(store, job_id, "RUNNING", timeout=60)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await store.request_cancel(job_id)
    rig.scheduler.poke.set()
    job = await wait_final(store, job_id, timeout=30)
    assert job["state"] == "INTERRUPTED"
    assert loop.time() - started < 10


async def test_many_jobs_at_once(rig: Rig, store: Store) -> None:
    service = rig.catalogue.services["probe"]
    ids = [await submit(store, service, "echo", str(i)) for i in range(12)]
    jobs = [await wait_final(store, job_id, timeout=120) for job_id in ids]
    assert [j["state"] for j in jobs] == ["COMPLETED"] * 12
    for i, job_id in enumerate(ids):
        assert (rig.settings.jobs_dir / job_id / "stdout").read_text() == f"{i}\n"


async def test_the_job_gets_a_clean_environment(rig: Rig, store: Store) -> None:
    os.environ["APPLIANCE_TEST_LEAK"] = "secret"
    try:
        job_id = await submit(store, rig.catalogue.services["probe"], "printenv")
        job = await wait_final(store, job_id, timeout=60)
    finally:
        del os.environ["APPLIANCE_TEST_LEAK"]
    assert job["state"] == "COMPLETED", job
    printed = (rig.settings.jobs_dir / job_id / "stdout").read_text()
    assert "APPLIANCE_TEST_LEAK" not in printed
    assert "MONGODB" not in printed
    assert "PROBE_GREETING=hi there" in printed  # the service's own env


def running_now(rig: Rig) -> int:
    """How many of the rig's jobs run at this moment, as the engine or the pool says."""
    if rig.kind == "docker":
        listed = subprocess.run(["docker", "ps", "-q", "--filter",
                                 f"label=appliance.instance={rig.settings.instance}"],
                                capture_output=True, text=True, check=True).stdout  # fmt: skip
        return len(listed.split())
    code = ("import asyncio, sys; from appliance.messaging import RpcClient\n"
            "async def main():\n    c = RpcClient(sys.argv[1], timeout=5)\n"
            "    print((await c.call('ping'))['running']); c.close()\nasyncio.run(main())")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code, rig.settings.worker_address],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return int(out)


@pytest.mark.parametrize("rig", ["docker", "local"], indirect=True)
async def test_queued_jobs_wait_for_a_slot_and_all_finish(rig: Rig, store: Store) -> None:
    service = rig.catalogue.services["probe"]
    ids = [await submit(store, service, "sleep", "1") for _ in range(3 * SLOTS)]
    seen = []
    while not all(j["state"] in FINAL for j in [await store.get_job(i) or {"state": "X"}
                                               for i in ids]):  # fmt: skip
        seen.append(await asyncio.to_thread(running_now, rig))
        await asyncio.sleep(0.05)
    jobs = [await wait_final(store, job_id, timeout=120) for job_id in ids]
    assert all(j["state"] == "COMPLETED" for j in jobs)
    assert max(seen) == SLOTS  # the slots were used, and never more than them
    first, last = min(j["started_at"] for j in jobs), max(j["started_at"] for j in jobs)  # type: ignore[type-var]
    assert (last - first).total_seconds() >= 1.5  # type: ignore[operator]  # three waves


async def test_a_plan_of_two_steps_runs_them_in_order_in_one_directory(
    rig: Rig, store: Store
) -> None:
    job_id = new_id()
    steps = (Step(("echo", "one"), TEST_IMAGE, stdout="1.out", stderr="1.err"),
             Step(("touch", "two.txt"), TEST_IMAGE, stdout="2.out", stderr="2.err"))  # fmt: skip
    plan = Plan(job_location(job_id), steps, resources=Resources(time_limit=600))
    await insert_planned(store, plan, job_id, rig.kind)
    job = await wait_final(store, job_id, timeout=60)
    assert job["state"] == "COMPLETED", job
    assert [s["exit_code"] for s in job["steps"]] == [0, 0]
    work = rig.settings.jobs_dir / job_id
    assert (work / "1.out").read_text() == "one\n" and (work / "two.txt").exists()
    records = Path(record_dir(work))
    assert (records / ".exit.json").exists() and (records / ".exit-1.json").exists()
    assert {"1.out", "2.out"} <= {o["path"] for o in job["outputs"]}
