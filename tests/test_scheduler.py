"""The scheduler against a real MongoDB, with the in-memory backend (fast)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from appliance.catalogue import load_catalogue
from appliance.exits import record_dir
from appliance.forms import validate
from appliance.jobrecord import JobRecord
from appliance.messaging import WakeSender
from appliance.plan import Plan, PlanError, Step, job_location, plan_mapping
from appliance.runners.base import StepRun
from appliance.runners.memory import MemoryBackend
from appliance.scheduler.core import Scheduler
from appliance.scheduler.housekeeping import Housekeeping
from appliance.settings import Settings
from appliance.states import JobState
from appliance.store import Store, new_id, utcnow
from appliance.submission import record_job
from appliance.volumes import Volumes
from tests.helpers import (
    insert_planned,
    make_settings,
    planner_for,
    submit,
    wait_final,
    wait_for,
    wait_state,
    write_probe,
)

pytestmark = pytest.mark.anyio


class Running:
    """A scheduler running in the background of a test."""

    def __init__(self, settings: Settings, store: Store, backend: MemoryBackend | None = None,
                 *, runner: str = "mem", chores: Callable[[Scheduler], Housekeeping] | None = None,
                 **options: Any) -> None:  # fmt: skip
        self.catalogue = load_catalogue(settings)
        assert self.catalogue.errors == []
        self.backend = backend or MemoryBackend(Volumes.local(settings))
        self.scheduler = Scheduler(settings, store, self.catalogue, {runner: self.backend},
                                   **options)  # fmt: skip
        self.chores = chores(self.scheduler) if chores else None
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.scheduler.run(self.stop, housekeeping=self.chores))

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)

    def kill(self) -> None:
        """Die without giving anything back, like kill -9."""
        self.task.cancel()


@pytest.fixture
def settings(tmp_path: Path, mongodb_uri: str, database_name: str) -> Settings:
    settings = make_settings(tmp_path, mongodb_uri, database_name)
    write_probe(settings, "mem", backend="memory")
    return settings


@pytest.fixture
async def running(settings: Settings, store: Store) -> AsyncIterator[Running]:
    run = Running(settings, store)
    yield run
    with contextlib.suppress(Exception):
        await run.close()
    await run.backend.close()


async def test_a_job_runs_to_completion_with_outputs_recorded(
    running: Running, store: Store, settings: Settings
) -> None:
    service = running.catalogue.services["probe"]
    job_id = await submit(store, service, "touch", "made.txt")
    job = await wait_final(store, job_id)
    assert job["state"] == "COMPLETED"
    assert job["exit_code"] == 0
    assert job["runner"] == "mem" and job["backend"] == "memory" and job["handle"] == job_id
    assert isinstance(job["plan"], str)  # stored as JSON text (appliance.plan)
    plan = plan_mapping(job["plan"])
    assert plan["steps"][0]["argv"] == ["env", "touch", "made.txt"]
    assert plan["work"] == {"volume": "jobs", "path": job_id}
    assert [s["exit_code"] for s in job["steps"]] == [0]
    assert job["started_at"] and job["completed_at"] and job["started_at"] <= job["completed_at"]
    paths = {o["path"]: o for o in job["outputs"]}
    assert set(paths) == {"made.txt", "stdout", "stderr"}
    assert paths["made.txt"]["id"] == "made" and paths["made.txt"]["media_type"] == "text/plain"
    assert (settings.jobs_dir / job_id / "made.txt").is_file()
    assert job["lease_owner"] is None and job["lease_expires"] is None


async def test_exit_codes_map_to_states(running: Running, store: Store) -> None:
    service = running.catalogue.services["probe"]
    failed = await submit(store, service, "false")
    missing = await submit(store, service, "missing")
    echoed = await submit(store, service, "echo", "hi", "there")
    assert (await wait_final(store, failed))["state"] == "FAILED"
    job = await wait_final(store, missing)
    assert job["state"] == "ERROR" and job["exit_code"] == 127
    assert (await wait_final(store, echoed))["state"] == "COMPLETED"


async def test_cancel_a_running_job(running: Running, store: Store) -> None:
    job_id = await submit(store, running.catalogue.services["probe"], "sleep", "60")
    await wait_state(store, job_id, "RUNNING")
    await store.request_cancel(job_id)
    job = await wait_final(store, job_id, timeout=5)
    assert job["state"] == "INTERRUPTED"
    assert job["error"] == "cancelled"


async def test_cancel_before_start_never_runs(settings: Settings, store: Store) -> None:
    service = write_probe(settings, "mem", backend="memory")
    job_id = await submit(store, service, "echo", "never")
    await store.request_cancel(job_id)
    run = Running(settings, store)
    try:
        job = await wait_final(store, job_id)
    finally:
        await run.close()
    assert job["state"] == "INTERRUPTED"
    assert "before it started" in str(job["error"])
    assert run.backend.submissions == []


async def test_time_limit(settings: Settings, store: Store) -> None:
    service = write_probe(settings, "mem", backend="memory", time_limit="0.5s")
    run = Running(settings, store)
    try:
        job_id = await submit(store, service, "sleep", "30")
        job = await wait_final(store, job_id, timeout=10)
    finally:
        await run.close()
    assert job["state"] == "FAILED"
    assert "time limit" in str(job["error"])


async def test_unreachable_runner_retries_then_runs(settings: Settings, store: Store) -> None:
    service = write_probe(settings, "mem", backend="memory")
    run = Running(settings, store)
    run.backend.reachable = False
    try:
        job_id = await submit(store, service, "echo", "later")
        await wait_for(lambda: _field(store, job_id, "attempts"), timeout=10)
        waiting = await store.get_job(job_id)
        assert waiting is not None and waiting["state"] == "ACCEPTED"
        why = waiting.get("waiting") or {}
        assert why.get("reason") == "runner" and "switched off" in why.get("message", "")
        run.backend.reachable = True
        job = await wait_final(store, job_id, timeout=15)
    finally:
        await run.close()
    assert job["state"] == "COMPLETED"


class FaultyBackend(MemoryBackend):
    """A backend whose ``submit`` raises what no backend should: an untranslated error."""

    def __init__(self, volumes: Volumes, failures: int) -> None:
        super().__init__(volumes)
        self.failures = failures

    async def submit(self, run: StepRun) -> str:
        if self.failures > 0:
            self.failures -= 1
            raise OSError(28, "No space left on device")
        return await super().submit(run)


async def test_an_untranslated_runner_fault_waits_saying_so_then_runs(
    settings: Settings, store: Store
) -> None:
    service = write_probe(settings, "mem", backend="memory")
    run = Running(settings, store, FaultyBackend(Volumes.local(settings), failures=2))
    try:
        job_id = await submit(store, service, "echo", "x")

        async def waiting_on_the_runner() -> JobRecord | None:
            job = await store.get_job(job_id)
            return job if job and (job.get("waiting") or {}).get("reason") == "runner" else None

        job = await wait_for(waiting_on_the_runner, timeout=10)
        assert job["state"] == "ACCEPTED"
        message = job["waiting"]["message"]
        assert "failed unexpectedly: OSError" in message and "No space left" in message
        job = await wait_final(store, job_id, timeout=15)
    finally:
        await run.close()
    assert job["state"] == "COMPLETED"  # tried again after the faults, and then it ran


@pytest.mark.parametrize(("fault", "words"), [
    ("unreachable", ("unreachable", "switched off")),
    ("untranslated", ("kept failing", "No space left")),
])  # fmt: skip
async def test_a_runner_that_keeps_failing_ends_the_job_saying_why(
    settings: Settings, store: Store, fault: str, words: tuple[str, str]
) -> None:
    service = write_probe(settings, "mem", backend="memory")
    backend = FaultyBackend(
        Volumes.local(settings), failures=1000 if fault == "untranslated" else 0
    )
    backend.reachable = fault != "unreachable"
    run = Running(settings, store, backend, submit_retry_seconds=1.0)
    try:
        job_id = await submit(store, service, "echo", "x")
        job = await wait_final(store, job_id, timeout=15)
    finally:
        await run.close()
    assert job["state"] == "ERROR"
    assert all(word in str(job["error"]) for word in words), job["error"]


async def _field(store: Store, job_id: str, name: str) -> Any:
    job = await store.get_job(job_id)
    return job.get(name) if job else None


async def test_a_wake_up_starts_a_job_within_milliseconds(settings: Settings, store: Store) -> None:
    slow_sweep = make_settings(Path(str(settings.jobs_dir.parent)), settings.mongodb_uri,
                               settings.mongodb_database, sweep_seconds=60)  # fmt: skip
    run = Running(slow_sweep, store)
    sender = WakeSender(slow_sweep.scheduler_address)  # every address listed
    try:
        await asyncio.sleep(0.5)  # the first sweep is over; now only a wake-up can start work
        job_id = await submit(store, run.catalogue.services["probe"], "echo", "fast")
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await sender.notify("submitted", job_id)
        await wait_final(store, job_id, timeout=5)
        assert loop.time() - started < 2.0  # far below the 60 s sweep
    finally:
        sender.close()
        await run.close()


async def test_rejected_at_submission_when_no_runner_is_chosen(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    module = tmp_path / "pick_none.py"
    module.write_text("def select(values):\n    return None\n")
    sys.path.insert(0, str(tmp_path))
    try:
        path = settings.services_dir / "probe.service.yaml"
        text = path.read_text().replace(
            "runner: mem\n",
            "execution: {runners: {default: {runner: mem}}, selector: pick_none.select}\n",
        )
        path.write_text(text)
        run = Running(settings, store)
        try:
            job_id = await submit(store, run.catalogue.services["probe"], "echo", "x")
            recorded = await store.get_job(job_id)  # final at once: no scheduler needed
            await asyncio.sleep(0.5)
        finally:
            await run.close()
    finally:
        sys.path.remove(str(tmp_path))
    assert recorded is not None and recorded["state"] == "REJECTED"
    assert "plan" not in recorded and recorded["error"] == "no runner accepts these values"
    assert run.backend.submissions == []


async def test_a_queued_job_keeps_its_plan_when_the_service_file_changes_or_goes(
    settings: Settings, store: Store
) -> None:
    """The command is built once, at submission: later edits change nothing for it."""
    service = write_probe(settings, "mem", backend="memory")
    job_id = await submit(store, service, "touch", "first.txt")
    path = settings.services_dir / "probe.service.yaml"
    path.write_text(path.read_text().replace("touch: touch", "touch: echo")
                    .replace('"*.txt"', '"*.log"'))  # fmt: skip
    edited = await submit(store, load_catalogue(settings).services["probe"], "touch", "x.txt")
    path.unlink()  # and then the service is gone altogether
    run = Running(settings, store)
    try:
        job = await wait_final(store, job_id)
        later = await wait_final(store, edited)
    finally:
        await run.close()
    assert job["state"] == "COMPLETED", job
    assert (settings.jobs_dir / job_id / "first.txt").is_file()  # touch ran, not echo
    assert {o["path"] for o in job["outputs"]} == {"first.txt", "stdout", "stderr"}  # *.txt
    assert later["state"] == "COMPLETED"
    assert (settings.jobs_dir / edited / "stdout").read_text() == "x.txt\n"  # the edit's echo
    assert not (settings.jobs_dir / edited / "x.txt").exists()


async def test_a_dead_schedulers_jobs_are_adopted_and_finish_once(
    settings: Settings, store: Store
) -> None:
    backend = MemoryBackend(Volumes.local(settings))
    first = Running(settings, store, backend)
    service = first.catalogue.services["probe"]
    ids = [await submit(store, service, "sleep", "1.5") for _ in range(5)]
    for job_id in ids:
        await wait_state(store, job_id, "RUNNING")
    first.kill()  # no leases given back: the next scheduler must wait for them to expire
    second = Running(settings, store, backend)
    try:
        jobs = [await wait_final(store, job_id, timeout=20) for job_id in ids]
    finally:
        await second.close()
    assert [j["state"] for j in jobs] == ["COMPLETED"] * 5
    assert sorted(backend.submissions) == sorted(ids)  # each submitted exactly once
    assert all(j["lease_gen"] == 2 for j in jobs)


async def test_stop_gives_jobs_back_for_the_next_scheduler(
    settings: Settings, store: Store
) -> None:
    backend = MemoryBackend(Volumes.local(settings))
    first = Running(settings, store, backend)
    job_id = await submit(store, first.catalogue.services["probe"], "sleep", "1")
    await wait_state(store, job_id, "RUNNING")
    await first.close()
    assert (await store.get_job(job_id))["lease_owner"] is None  # type: ignore[index]
    second = Running(settings, store, backend)
    try:
        job = await wait_final(store, job_id, timeout=10)
    finally:
        await second.close()
    assert job["state"] == "COMPLETED"
    assert backend.submissions == [job_id]


async def test_stop_cancels_starts_in_progress_and_gives_their_leases_back(
    settings: Settings, store: Store
) -> None:
    backend = MemoryBackend(Volumes.local(settings))
    backend.submit_delay = 30.0  # an engine that takes its time to start anything
    first = Running(settings, store, backend)
    job_id = await submit(store, first.catalogue.services["probe"], "echo", "x")
    await wait_for(lambda: _field(store, job_id, "lease_owner"))
    began = time.monotonic()
    await first.close()
    assert time.monotonic() - began < 5  # the slow start did not hold the stop back
    job = await store.get_job(job_id)
    assert job is not None and job["state"] == "ACCEPTED" and job["lease_owner"] is None
    backend.submit_delay = 0.0
    second = Running(settings, store, backend)
    try:  # taken at once, not a lease later
        job = await wait_final(store, job_id, timeout=settings.lease_seconds)
    finally:
        await second.close()
    assert job["state"] == "COMPLETED"
    assert backend.runs == [job_id]


async def test_two_schedulers_never_run_a_job_twice(settings: Settings, store: Store) -> None:
    service = write_probe(settings, "mem", backend="memory")
    ids = [await submit(store, service, "echo", str(i)) for i in range(60)]
    shared = MemoryBackend(Volumes.local(settings))  # like one engine behind two schedulers
    first = Running(settings, store, shared)
    second = Running(settings, store, shared, listen=False)
    try:
        jobs = [await wait_final(store, job_id) for job_id in ids]
    finally:
        await first.close()
        await second.close()
    assert all(j["state"] == "COMPLETED" for j in jobs)
    # Every submit counts, repeats too: a job submitted twice (two claims) fails this.
    assert sorted(shared.submissions) == sorted(ids)
    assert all(j["claims"] == 1 for j in jobs)


async def test_schedulers_with_different_runners_share_one_database(
    settings: Settings, store: Store
) -> None:
    """A docker scheduler on a workstation and a SLURM one on a submit host: each claims
    and runs only its own runner's jobs, and none ends in ERROR."""
    (settings.runners_dir / "other.yaml").write_text("backend: memory\n")
    here = write_probe(settings, "mem", backend="memory")
    there = (settings.services_dir / "probe.service.yaml").read_text().replace(
        "runner: mem", "runner: other").replace("name: Probe", "name: Other")  # fmt: skip
    (settings.services_dir / "other.service.yaml").write_text(there)
    catalogue = load_catalogue(settings)
    mine = [await submit(store, here, "sleep", "0.2") for _ in range(10)]
    theirs = [await submit(store, catalogue.services["other"], "sleep", "0.2") for _ in range(10)]
    first = Running(settings, store, runner="mem")
    second = Running(settings, store, runner="other", listen=False)
    try:
        jobs = [await wait_final(store, job_id) for job_id in mine + theirs]
    finally:
        await first.close()
        await second.close()
    assert [j["state"] for j in jobs] == ["COMPLETED"] * 20
    assert sorted(first.backend.submissions) == sorted(mine)
    assert sorted(second.backend.submissions) == sorted(theirs)


async def test_a_job_whose_runner_no_scheduler_runs_ends_with_the_reason(
    settings: Settings, store: Store
) -> None:
    (settings.runners_dir / "gpu.yaml").write_text("backend: memory\n")
    text = (settings.services_dir / "probe.service.yaml").read_text()
    (settings.services_dir / "gpu.service.yaml").write_text(
        text.replace("runner: mem", "runner: gpu").replace("name: Probe", "name: GPU"))  # fmt: skip
    job_id = await submit(store, load_catalogue(settings).services["gpu"], "echo", "x")
    run = Running(settings, store, submit_retry_seconds=3.0,
                  chores=lambda s: Housekeeping(s, interval=0.3))  # fmt: skip
    try:

        async def says_why() -> JobRecord | None:  # before it ends, the job says why it waits
            job = await store.get_job(job_id)
            found = (job or {}).get("waiting") or {}
            return job if found.get("reason") == "no-scheduler" else None

        waiting = await wait_for(says_why, timeout=10)
        job = await wait_final(store, job_id, timeout=15)
    finally:
        await run.close()
    message = waiting["waiting"]["message"]
    assert "no running scheduler runs its runner 'gpu': it ends in ERROR at " in message
    assert job["state"] == "ERROR" and job["waiting"] is None
    assert "no scheduler runs its runner 'gpu'" in str(job["error"])
    assert run.backend.submissions == []


class SlowChores(Housekeeping):
    """Housekeeping whose rounds take as long as a sweep over a huge database."""

    def __init__(self, scheduler: Scheduler) -> None:
        super().__init__(scheduler, interval=0.1)
        self.busy = asyncio.Event()

    async def round(self) -> None:
        self.busy.set()
        await asyncio.sleep(3600)


async def test_housekeeping_never_delays_starting_a_job(settings: Settings, store: Store) -> None:
    run = Running(settings, store, chores=SlowChores)
    assert isinstance(run.chores, SlowChores)
    try:
        await asyncio.wait_for(run.chores.busy.wait(), 10)
        job_id = await submit(store, run.catalogue.services["probe"], "echo", "x")
        job = await wait_final(store, job_id, timeout=5)
    finally:
        await run.close()
    assert job["state"] == "COMPLETED"


def three_steps(settings: Settings, job_id: str, *, second_stops: bool) -> Plan:
    return Plan(job_location(job_id), (
        Step(("echo", "one"), stdout="1.out", stderr="1.err"),
        Step(("false",), stdout="2.out", stderr="2.err", stop_on_failure=second_stops),
        Step(("touch", "three.txt"), stdout="3.out", stderr="3.err"),
    ))  # fmt: skip


@pytest.mark.parametrize("runs_steps", [False, True], ids=["step-by-step", "backend-runs-all"])
async def test_a_multi_step_plan_runs_in_order_and_keeps_each_steps_end(
    settings: Settings, store: Store, runs_steps: bool
) -> None:
    options = "{runs_steps: true}" if runs_steps else "{}"
    write_probe(settings, "mem", backend="memory", options=options)
    goes_on, stops = new_id(), new_id()
    await insert_planned(store, three_steps(settings, goes_on, second_stops=False), goes_on, "mem")
    await insert_planned(store, three_steps(settings, stops, second_stops=True), stops, "mem")
    backend = MemoryBackend(Volumes.local(settings), runs_steps=runs_steps)
    run = Running(settings, store, backend)
    try:
        done = await wait_final(store, goes_on)
        failed = await wait_final(store, stops)
    finally:
        await run.close()
    assert done["state"] == "COMPLETED", done  # a failure that may go on does not fail it
    assert [s["exit_code"] for s in done["steps"]] == [0, 1, 0]
    work = settings.jobs_dir / goes_on
    assert (work / "1.out").read_text() == "one\n" and (work / "three.txt").exists()
    assert {p.name for p in Path(record_dir(work)).glob(".exit*.json")} == {
        ".exit.json", ".exit-1.json", ".exit-2.json"}  # fmt: skip
    assert {"1.out", "2.err", "3.out"} <= {o["path"] for o in done["outputs"]}
    assert failed["state"] == "FAILED" and failed["exit_code"] == 1
    assert [s["exit_code"] for s in failed["steps"]][:2] == [0, 1]
    assert not (settings.jobs_dir / stops / "three.txt").exists()  # the third never ran
    if not runs_steps:
        assert backend.submissions.count(f"{goes_on}-2") == 1
        assert f"{stops}-2" not in backend.submissions
    else:
        assert backend.submissions.count(goes_on) == 1 and len(backend.submissions) == 2


async def test_cancel_between_steps_stops_the_plan(settings: Settings, store: Store) -> None:
    job_id = new_id()
    plan = Plan(job_location(job_id), (Step(("sleep", "1")), Step(("touch", "later.txt"),
                stdout="b.out", stderr="b.err")))  # fmt: skip
    await insert_planned(store, plan, job_id, "mem")
    run = Running(settings, store)
    try:
        await wait_state(store, job_id, "RUNNING")
        await store.request_cancel(job_id)
        job = await wait_final(store, job_id, timeout=10)
    finally:
        await run.close()
    assert job["state"] == str(JobState.INTERRUPTED)
    assert not (settings.jobs_dir / job_id / "later.txt").exists()


def test_a_plan_is_stored_as_text_and_read_from_text_or_a_document() -> None:
    plan = Plan(job_location("abc"), (Step(("echo", "x y"), stdout="o.txt"),))
    stored = plan.stored()
    assert isinstance(stored, str) and " " not in stored.replace("x y", "")  # compact
    assert Plan.from_json(stored) == plan == Plan.from_json(plan.to_json())  # and older records
    assert plan_mapping(stored) == plan.to_json() == plan_mapping(plan.to_json())
    for damaged in ("{not json", "[1, 2]", '"text"', "", None, 3):
        assert plan_mapping(damaged) == {}
        with pytest.raises(PlanError):
            Plan.from_json(damaged)
    with pytest.raises(PlanError):  # well-formed JSON, not a plan
        Plan.from_json('{"work": {"volume": "jobs", "path": "abc"}}')


@pytest.mark.parametrize("plan", [None, "{not json", '{"steps": []}'])
async def test_a_job_stored_without_a_valid_plan_ends_in_error_with_the_reason(
    settings: Settings, store: Store, plan: str | None
) -> None:
    """No plan at all, or its text damaged: the job ends in ERROR and says why."""
    job_id = new_id()
    record: JobRecord = {"_id": job_id, "service": "probe", "state": "ACCEPTED",
                         "runner": "mem", "submitted_at": await store.now(), "parameters": {}}  # fmt: skip
    if plan is not None:
        record["plan"] = plan
    await store.insert_job(record)
    run = Running(settings, store)
    try:
        job = await wait_final(store, job_id)
    finally:
        await run.close()
    assert job["state"] == "ERROR" and "without a valid run plan" in str(job["error"])


async def test_a_scheduler_never_starts_its_own_job_twice_after_its_lease_ran_out(
    settings: Settings, store: Store
) -> None:
    """Renewals stalled (a database outage) while a start was under way: the scheduler's
    own next claim takes the job again, and must not start it a second time."""
    backend = MemoryBackend(Volumes.local(settings))
    backend.submit_delay = 3.0
    run = Running(settings, store, backend)
    try:
        job_id = await submit(store, run.catalogue.services["probe"], "echo", "x")

        async def reclaimed() -> bool:
            job = await store.get_job(job_id)
            if job is None or job["claims"] >= 2 or job["state"] != "ACCEPTED":
                return job is not None and job["claims"] >= 2
            if job["lease_owner"] is not None:  # as if renewals had stalled
                past = utcnow() - timedelta(seconds=1)
                await store.jobs.update_one({"_id": job_id}, {"$set": {"lease_expires": past}})
                run.scheduler.kick.set()
            return False

        await wait_for(reclaimed, timeout=20, interval=0.1)
        job = await wait_final(store, job_id, timeout=20)
    finally:
        await run.close()
    assert job["state"] == "COMPLETED"
    assert backend.submissions == [job_id]  # claimed twice, started once


async def test_with_every_wake_up_lost_a_job_starts_within_one_sweep(
    settings: Settings, store: Store
) -> None:
    """A scheduler that hears nothing (its wake-up socket is not even open) still finds
    a new job by its own record, at its next sweep."""
    sweep = 1.0
    deaf = make_settings(Path(str(settings.jobs_dir.parent)), settings.mongodb_uri,
                         settings.mongodb_database, sweep_seconds=sweep)  # fmt: skip
    run = Running(deaf, store, listen=False)
    try:
        await asyncio.sleep(0.5)  # the first look for work is over: only sweeps remain
        service = run.catalogue.services["probe"]
        values = await validate(service, {"program": ["echo"], "arg": ["lost"]})
        job = await record_job(store, planner_for(service), service, values)
        done = await wait_final(store, job["_id"], timeout=10)
    finally:
        await run.close()
    waited = (done["queued_at"] - job["submitted_at"]).total_seconds()
    assert waited <= sweep + 1.0, waited
    assert done["state"] == "COMPLETED"
