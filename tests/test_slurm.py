"""The slurm backend against a real single-node SLURM cluster (scripts/test starts it):
SLURM's own time limit, memory limit, cancelling a pending job, a scheduler restarted
while jobs are pending and running, fifty jobs followed asking SLURM only about its own,
and Clustal Omega submitted by the previous system's client, compared with the docker
runner. The behavioural suite (tests/test_runners.py) runs over both tool modes too."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from slivka_client import SlivkaClient

from appliance.catalogue import Catalogue, load_catalogue
from appliance.forms import validate
from appliance.model import Resources
from appliance.plan import Plan, Step, job_location
from appliance.runners.base import RunState, StepRun
from appliance.runners.config import create_backend
from appliance.runners.slurm import SlurmBackend
from appliance.scheduler.core import Scheduler
from appliance.settings import Settings
from appliance.store import Store, new_id
from appliance.submission import record_job
from tests.conftest import ROOT
from tests.helpers import (
    TEST_IMAGE,
    build_test_image,
    make_settings,
    planner_for,
    slurm_available,
    wait_final,
    wait_for,
    wait_state,
)
from tests.web.stack import running_stack

pytestmark = pytest.mark.anyio

SERVICE = f"""\
appliance-version: 1
name: On the cluster
image: {TEST_IMAGE}
runner: {{runner}}
resources: {{{{memory: 64M, time-limit: 1h}}}}
parameters:
  script: {{{{name: Script, type: text}}}}
command: sh -c
args:
  script: {{{{arg: "$(value)"}}}}
"""
HUNGRY = "dd if=/dev/zero of=/dev/null bs=300M count=1 && echo done"  # a 300 MB buffer


@pytest.fixture(scope="module")
def cluster() -> None:
    slurm_available()


@pytest.fixture
def settings(tmp_path: Path, mongodb_uri: str, database_name: str, cluster: None) -> Settings:
    settings = make_settings(tmp_path, mongodb_uri, database_name, lease_seconds=3)
    (settings.runners_dir / "slurm.yaml").write_text("backend: slurm\n")
    (settings.runners_dir / "slurm-docker.yaml").write_text(
        "backend: slurm\noptions: {mode: docker}\n"
    )
    for runner in ("slurm", "slurm-docker"):
        (settings.services_dir / f"{runner}.service.yaml").write_text(SERVICE.format(runner=runner))
    build_test_image(tmp_path)
    return settings


class Rig:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.catalogue: Catalogue = load_catalogue(settings)
        assert self.catalogue.errors == []
        self.backends = {r: create_backend(self.catalogue.runners[r], settings)
                         for r in ("slurm", "slurm-docker")}  # fmt: skip
        self.scheduler: Scheduler | None = None
        self.task: asyncio.Task[None] | None = None
        self.stop = asyncio.Event()

    def start(self) -> None:
        self.stop = asyncio.Event()
        self.scheduler = Scheduler(self.settings, self.store, self.catalogue, self.backends)
        self.task = asyncio.create_task(self.scheduler.run(self.stop))

    def kill(self) -> None:
        assert self.task is not None
        self.task.cancel()

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.stop.set()
            await asyncio.wait_for(self.task, 60)

    async def run(self, runner: str, script: str) -> str:
        service = self.catalogue.services[runner]
        values = await validate(service, {"script": [script]})
        return str((await record_job(self.store, planner_for(service), service, values))["_id"])


@pytest.fixture
async def rig(settings: Settings, store: Store) -> AsyncIterator[Rig]:
    rig = Rig(settings, store)
    rig.start()
    yield rig
    await rig.close()


# SLURM's time limits are whole minutes, checked every ~30 s: this one job takes 60-90 s,
# so it is submitted first and its end is checked last, while the other tests run.
@pytest.fixture(scope="module")
def slow_timeout(
    tmp_path_factory: pytest.TempPathFactory, cluster: None
) -> Iterator[tuple[SlurmBackend, str, Path]]:
    root = tmp_path_factory.mktemp("timeout")
    settings = make_settings(root, "mongodb://unused", "unused")
    from appliance.runners.config import parse_runner_config

    backend = create_backend(parse_runner_config("slurm", {"backend": "slurm"}), settings)
    assert isinstance(backend, SlurmBackend)
    job_id = new_id()
    (settings.jobs_dir / job_id).mkdir()
    plan = Plan(job_location(job_id), (Step(("sleep", "600")),), resources=Resources(time_limit=10))
    handle = asyncio.run(backend.submit(StepRun(job_id, plan)))
    yield backend, handle, settings.jobs_dir / job_id
    subprocess.run(["scancel", handle.split(":")[0]], capture_output=True)  # if it outlived us


def test_the_time_limit_is_rounded_up_to_whole_minutes(
    slow_timeout: tuple[SlurmBackend, str, Path],
) -> None:
    _, handle, _ = slow_timeout
    slurm_id = handle.split(":")[0]
    shown = subprocess.run(["scontrol", "--oneliner", "show", "job", slurm_id],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "TimeLimit=00:01:00" in shown  # 10 s became one minute


@pytest.mark.parametrize("runner", ["slurm", "slurm-docker"])
async def test_the_memory_limit(rig: Rig, store: Store, runner: str) -> None:
    job = await wait_final(store, await rig.run(runner, HUNGRY), timeout=90)
    assert job["state"] == "FAILED", job
    assert "out of memory" in str(job["error"])


def idle_cpus() -> int:
    """CPUs of the cluster free now (the minute-long job of this module holds one)."""
    out = subprocess.run(["sinfo", "--noheader", "--format=%C"], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    return int(out.strip().split("/")[1])


async def test_cancel_a_pending_job(rig: Rig, store: Store) -> None:
    cpus = idle_cpus()
    busy = [await rig.run("slurm", "sleep 60") for _ in range(cpus)]
    for job_id in busy:
        await wait_state(store, job_id, "RUNNING", timeout=30)
    waiting = await rig.run("slurm", "echo ran > ran.txt")
    await wait_state(store, waiting, "QUEUED", timeout=30)
    await asyncio.sleep(1)
    assert (await store.get_job(waiting) or {})["state"] == "QUEUED"  # pending: no CPU free
    await store.request_cancel(waiting)
    job = await wait_final(store, waiting, timeout=30)
    assert job["state"] == "INTERRUPTED"
    assert not (rig.settings.jobs_dir / waiting / "ran.txt").exists()
    for job_id in busy:
        await store.request_cancel(job_id)
    for job_id in busy:
        assert (await wait_final(store, job_id, timeout=30))["state"] == "INTERRUPTED"


@pytest.mark.parametrize("runner", ["slurm", "slurm-docker"])
async def test_a_batch_job_an_administrator_cancelled_ends_with_the_reason(
    rig: Rig, store: Store, runner: str
) -> None:
    """scancel by someone else than the appliance (an administrator), in both modes: the
    job ends within lost_after, says SLURM cancelled it, and ran once."""
    job_id = await rig.run(runner, "echo run >> runs.txt; sleep 60")
    job = await wait_state(store, job_id, "RUNNING", timeout=60)
    subprocess.run(["scancel", str(job["handle"]).split(":")[0]], check=True)
    cancelled = time.monotonic()
    job = await wait_final(store, job_id, timeout=rig.settings.lost_after)
    assert time.monotonic() - cancelled < rig.settings.lost_after
    assert job["state"] == "FAILED" and "cancelled in SLURM" in str(job["error"]), job
    assert (rig.settings.jobs_dir / job_id / "runs.txt").read_text() == "run\n"


async def test_a_restarted_scheduler_follows_pending_and_running_jobs_each_run_once(
    rig: Rig, store: Store
) -> None:
    cpus = idle_cpus()
    ids = [await rig.run("slurm", "echo run >> runs.txt; sleep 4") for _ in range(cpus + 2)]
    await wait_for(lambda: _states(store, ids, {"RUNNING"}, cpus), timeout=60)
    rig.kill()  # no leases given back, like kill -9
    await asyncio.sleep(0.5)
    rig.start()
    jobs = [await wait_final(store, job_id, timeout=120) for job_id in ids]
    assert [j["state"] for j in jobs] == ["COMPLETED"] * len(ids)
    for job_id in ids:
        assert (rig.settings.jobs_dir / job_id / "runs.txt").read_text() == "run\n"
    handles = {j["handle"] for j in jobs}
    assert len(handles) == len(ids)  # one SLURM job each


async def _states(store: Store, ids: list[str], states: set[str], count: int) -> bool:
    jobs = [await store.get_job(i) for i in ids]
    return sum(1 for j in jobs if j and j["state"] in states) >= count


async def test_fifty_jobs_asking_slurm_only_about_its_own_rarely(
    rig: Rig, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every SLURM command is logged: squeue is asked about the appliance's own jobs only
    (by id, never the whole cluster), at most once per status_interval (ends come from
    the exit records meanwhile), and no submission asks anything first."""
    shim = tmp_path / "bin"
    shim.mkdir()
    log = tmp_path / "slurm.log"
    for command in ("squeue", "sacct", "scontrol", "sbatch"):
        real = subprocess.run(["sh", "-c", f"command -v {command}"], capture_output=True,
                              text=True).stdout.strip()  # fmt: skip
        (shim / command).write_text(f'#!/bin/sh\necho "{command} $*" >> {log}\nexec {real} "$@"\n')
        (shim / command).chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    backend = rig.backends["slurm"]
    assert isinstance(backend, SlurmBackend)
    backend.status_interval = 5.0
    sizes: list[int] = []
    status = backend.status

    async def counted(handles: list[str]) -> dict[str, object]:
        sizes.append(len(handles))
        return await status(handles)  # type: ignore[return-value]

    monkeypatch.setattr(backend, "status", counted)
    rounds_before = backend.status_rounds
    began = time.monotonic()
    ids = [await rig.run("slurm", "sleep 1") for _ in range(50)]
    jobs = [await wait_final(store, job_id, timeout=300) for job_id in ids]
    took = time.monotonic() - began
    assert [j["state"] for j in jobs] == ["COMPLETED"] * 50
    ours = {str(j["handle"]).split(":")[0] for j in jobs}
    calls = log.read_text().splitlines()
    queries = [c for c in calls if c.startswith("squeue")]
    rounds = backend.status_rounds - rounds_before
    assert len(queries) == rounds >= 1
    for query in queries:  # only the appliance's own jobs, by id
        asked = query.split("--jobs=")[1].split()[0].split(",")
        assert set(asked) <= ours, query
    assert not [c for c in calls if "--json" in c or "--name" in c]
    assert sum(1 for c in calls if c.startswith("sbatch")) == 50
    assert rounds <= took / backend.status_interval + 2, (rounds, took)
    assert len(sizes) > 4 * rounds  # the scheduler's rounds read the exit records meanwhile
    assert max(sizes) >= 10


def ensure_tool_images() -> None:
    if subprocess.run(["docker", "image", "inspect", "appliance/clustalo:1.2.4"],
                      capture_output=True).returncode != 0:  # fmt: skip
        subprocess.run([str(ROOT / "scripts" / "build-images")], check=True, capture_output=True)


def test_clustal_omega_through_the_old_client_on_slurm_as_on_docker(
    tmp_path: Path, mongodb_uri: str, database_name: str, cluster: None
) -> None:
    ensure_tool_images()
    shipped = (ROOT / "services" / "clustalo" / "clustalo.service.yaml").read_text()
    on_slurm = shipped.replace("runner: docker", "runner: slurm-docker")
    runners = {"slurm-docker": "backend: slurm\noptions: {mode: docker}\n"}
    with running_stack(tmp_path, mongodb_uri, database_name, runners=runners,
                       services={"clustalo": shipped, "clustalo-slurm": on_slurm}) as stack:  # fmt: skip
        client = SlivkaClient(stack.proxy + "/")
        source = ROOT / "examples" / "proteins.fa"
        alignments = {}
        for service_id in ("clustalo", "clustalo-slurm"):
            upload = client.upload_file(str(source), "proteins.fa")
            job = client[service_id].submit_job(data={"input": upload})
            deadline = time.monotonic() + 180
            while (
                job.status not in ("COMPLETED", "FAILED", "ERROR") and time.monotonic() < deadline
            ):
                time.sleep(0.3)
                job.reload()
            assert job.status == "COMPLETED", (service_id, job.status)
            [alignment] = [f for f in job.files if f.path == "alignment.aln"]
            target = tmp_path / f"{service_id}.aln"
            alignment.dump(str(target))
            alignments[service_id] = target.read_text()
        assert alignments["clustalo"] == alignments["clustalo-slurm"]
        assert alignments["clustalo"].startswith("CLUSTAL")


async def test_slurms_own_time_limit_ends_the_job(
    slow_timeout: tuple[SlurmBackend, str, Path],
) -> None:
    """Last: the job submitted first, with a time limit of 10 s (one minute for SLURM)."""
    backend, handle, _ = slow_timeout
    status = await wait_for(lambda: _finished(backend, handle), timeout=150, interval=2)
    assert status.exit_code == 143 and "time limit" in status.message


async def _finished(backend: SlurmBackend, handle: str) -> object:
    status = (await backend.status([handle]))[handle]
    return status if status.state is RunState.FINISHED else None


def test_a_tes_task_runs_on_slurm_as_on_docker(
    tmp_path: Path, mongodb_uri: str, database_name: str, cluster: None
) -> None:
    """The same task (inline input, a shared volume, workdir, stdin and stdout files)
    through the TES API on both runners that run images: the same files come out."""
    runners = {"slurm-docker": "backend: slurm\noptions: {mode: docker}\n"}
    with running_stack(tmp_path, mongodb_uri, database_name, runners=runners, tes_enabled=True,
                       tes_anonymous=True, tes_images=[TEST_IMAGE]) as stack:  # fmt: skip
        ids = {}
        for runner in ("docker", "slurm-docker"):
            task = {
                "name": f"on-{runner}",
                "inputs": [{"path": "/in/words.txt", "content": "b\na\nc\n"}],
                "executors": [
                    {"image": TEST_IMAGE, "command": ["sort"], "stdin": "/in/words.txt",
                     "stdout": "/work/sorted.txt"},
                    {"image": TEST_IMAGE, "command": ["sh", "-c", "pwd; wc -l < sorted.txt"],
                     "workdir": "/work", "stdout": "/work/count.txt"},
                ],
                "volumes": ["/work"],
                "resources": {"backend_parameters": {"runner": runner}},
            }  # fmt: skip
            response = httpx.post(f"{stack.proxy}/ga4gh/tes/v1/tasks", json=task)
            assert response.status_code == 200, response.text
            ids[runner] = response.json()["id"]
        for runner, task_id in ids.items():
            deadline = time.monotonic() + 180
            while True:
                got = httpx.get(f"{stack.proxy}/ga4gh/tes/v1/tasks/{task_id}?view=FULL").json()
                if got["state"] in ("COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"):
                    break
                assert time.monotonic() < deadline, got["state"]
                time.sleep(0.3)
            assert got["state"] == "COMPLETE", (runner, got["logs"])
            assert [log["exit_code"] for log in got["logs"][0]["logs"]] == [0, 0]
            work = stack.settings.jobs_dir / task_id / "fs" / "work"
            assert (work / "sorted.txt").read_text() == "a\nb\nc\n", runner
            assert (work / "count.txt").read_text().split() == ["/work", "3"], runner


async def test_a_status_round_costs_the_same_with_other_users_jobs_queued(
    cluster: None, tmp_path: Path
) -> None:
    """A busy cluster: 300 held jobs of another user, in every partition. A round asks
    one command about the appliance's jobs alone, with or without them, and its answer
    does not grow (bench/slurm_rounds.py measures the same with thousands)."""
    settings = make_settings(tmp_path, "mongodb://unused", "unused")
    from appliance.runners.config import parse_runner_config

    backend = create_backend(parse_runner_config("slurm", {"backend": "slurm"}), settings)
    assert isinstance(backend, SlurmBackend)
    backend.status_interval = 0.0  # every call a round
    handles = []
    for _ in range(3):
        job_id = new_id()
        (settings.jobs_dir / job_id).mkdir()
        plan = Plan(job_location(job_id), (Step(("sleep", "120")),))
        handles.append(await backend.submit(StepRun(job_id, plan)))

    async def one_round() -> tuple[int, int]:
        calls, answered = sum(backend.calls.values()), backend.parsed_bytes
        await backend.status(handles)
        return sum(backend.calls.values()) - calls, backend.parsed_bytes - answered

    other = "appliance-test-other"
    if subprocess.run(["id", other], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", other], check=True)
    try:
        before = await one_round()
        partitions = subprocess.run(["sinfo", "--noheader", "--format=%R"], capture_output=True,
                                    text=True).stdout.split()  # fmt: skip
        script = "".join(f"sbatch --hold --quiet --output=/dev/null --partition="
                         f"{partitions[i % len(partitions)]} --wrap 'sleep 600'\n"
                         for i in range(300))  # fmt: skip
        # the cluster's configuration is in the test run's private folder: the other
        # user gets a copy it can read (sbatch would otherwise look for one, retrying)
        conf = Path(f"/tmp/appliance-foreign-{os.getpid()}.conf")
        conf.write_text(Path(os.environ["SLURM_CONF"]).read_text())
        conf.chmod(0o644)
        env = {"PATH": os.environ["PATH"], "SLURM_CONF": str(conf), "HOME": "/tmp"}
        try:
            subprocess.run(["runuser", "-u", other, "--", "bash", "-s"], input=script,
                           text=True, check=True, cwd="/tmp", env=env, timeout=120)  # fmt: skip
        finally:
            conf.unlink()
        queued = subprocess.run(["squeue", "--noheader", f"--user={other}", "--format=%i"],
                                capture_output=True, text=True).stdout.split()  # fmt: skip
        assert len(queued) == 300
        after = await one_round()
        # one command each time; the answer is the appliance's three jobs (a state may have
        # changed between the rounds: a few bytes), never the other 300 (~10 KB more)
        assert before[0] == after[0] == 1 and after[1] < before[1] + 100, (before, after)
    finally:
        subprocess.run(["scancel", f"--user={other}"], capture_output=True)
        for handle in handles:
            subprocess.run(["scancel", handle.split(":")[0]], capture_output=True)
