"""Building blocks for scheduler and runner tests."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from appliance.forms import validate
from appliance.jobrecord import JobRecord
from appliance.model import Service
from appliance.plan import Plan
from appliance.planning import Planner
from appliance.runners.config import load_runner_configs
from appliance.runners.registry import abilities_of
from appliance.servicefolder import load_service_file
from appliance.settings import Settings
from appliance.store import Store
from appliance.submission import record_job

TEST_IMAGE = "appliance-test/busybox:local"
FINAL = {"COMPLETED", "FAILED", "ERROR", "INTERRUPTED", "DELETED", "REJECTED"}

PROBE = """\
appliance-version: 1
name: Probe
image: {image}
runner: {runner}
resources: {resources}
parameters:
  program:
    name: Program
    type: choice
    choices: {{echo: echo, touch: touch, "false": "false", sleep: sleep,
               missing: no-such-program, printenv: env}}
  arg: {{name: Argument, type: "text[]", required: false}}
command: env
env:
  PROBE_GREETING: hi there
args:
  program: {{arg: "$(value)"}}
  arg: {{arg: "$(value)"}}
outputs:
  made: {{path: "*.txt", name: Made, media-type: text/plain}}
"""


def make_settings(tmp_path: Path, mongodb_uri: str, database: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "mongodb_uri": mongodb_uri,
        "mongodb_database": database,
        "jobs_dir": str(tmp_path / "jobs"),
        "uploads_dir": str(tmp_path / "uploads"),
        "services_dir": str(tmp_path / "services"),
        "runners_dir": str(tmp_path / "runners"),
        "scheduler_address": f"ipc://{tmp_path}/scheduler.sock",
        "worker_address": f"ipc://{tmp_path}/worker.sock",
        "lease_seconds": 2,
        "sweep_seconds": 0.5,
        "instance": f"t{tmp_path.name[-6:].lower().replace('_', '')}",
        "service_tests": False,  # on where a test is about them (tests/test_servicetests.py)
        "disk_warning_percent": 0,  # on where a test is about it (tests/test_diskspace.py)
    }
    values.update(changes)
    for key in ("jobs_dir", "uploads_dir", "services_dir", "runners_dir"):
        Path(values[key]).mkdir(parents=True, exist_ok=True)
    return Settings.from_mapping(values, source="test")


def write_probe(settings: Settings, runner: str, *, time_limit: str = "1h", backend: str | None = None,
                options: str = "{}") -> Service:  # fmt: skip
    """The probe service on ``runner`` (of ``backend``), with the limits that backend
    enforces (all of them on docker; the time limit alone elsewhere)."""
    backend = backend or runner
    (settings.runners_dir / f"{runner}.yaml").write_text(
        f"backend: {backend}\noptions: {options}\n"
    )
    limits = {"time-limit": time_limit, "memory": "64M", "pids": 32, "cpus": 0.5}
    enforced = abilities_of(backend).enforces
    resources = ", ".join(f"{k}: {v}" for k, v in limits.items()
                          if k == "time-limit" or k in enforced)  # fmt: skip
    path = settings.services_dir / "probe.service.yaml"
    path.write_text(PROBE.format(image=TEST_IMAGE, runner=runner, resources=f"{{{resources}}}"))
    return load_service_file(path)


def planner_for(service: Service) -> Planner:
    """A planner with the runner configurations of the test layout ``make_settings``
    makes (``services/`` and ``runners/`` side by side)."""
    runners, errors = load_runner_configs(Path(service.source).parent.parent / "runners")
    assert errors == [], errors
    return Planner(runners, dict(os.environ))


async def submit(store: Store, service: Service, program: str, *args: str,
                 planner: Planner | None = None, webhook: str | None = None,
                 reuse: bool = True) -> str:  # fmt: skip
    raw: dict[str, list[Any]] = {"program": [program]}
    if args:
        raw["arg"] = list(args)
    values = await validate(service, raw)
    job = await record_job(store, planner or planner_for(service), service, values,
                           webhook=webhook, reuse=reuse)  # fmt: skip
    return str(job["_id"])


async def insert_planned(store: Store, plan: Plan, job_id: str, runner: str) -> None:
    """A job with a plan of the test's own (as the TES API will make them), ACCEPTED."""
    await store.insert_job({"_id": job_id, "kind": "task", "service": "", "state": "ACCEPTED",
                            "submitted_at": await store.now(), "parameters": {}, "values": {},
                            "runner": runner, "plan": plan.to_json()})  # fmt: skip


async def wait_for(
    check: Callable[[], Awaitable[Any]], timeout: float = 30.0, interval: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {check}")
        await asyncio.sleep(interval)


async def wait_final(store: Store, job_id: str, timeout: float = 30.0) -> JobRecord:
    async def final() -> JobRecord | None:
        job = await store.get_job(job_id)
        return job if job is not None and job["state"] in FINAL else None

    result: JobRecord = await wait_for(final, timeout)
    return result


async def wait_state(store: Store, job_id: str, state: str, timeout: float = 30.0) -> JobRecord:
    async def reached() -> JobRecord | None:
        job = await store.get_job(job_id)
        return job if job is not None and job["state"] == state else None

    result: JobRecord = await wait_for(reached, timeout)
    return result


def build_test_image(tmp_path: Path) -> None:
    """The busybox test image, built once per engine (FROM scratch: no registry needed)."""
    if (
        subprocess.run(["docker", "image", "inspect", TEST_IMAGE], capture_output=True).returncode
        == 0
    ):
        return
    context = tmp_path / "busybox-image"
    shutil.copytree(Path(__file__).parent / "images" / "busybox", context)
    shutil.copy("/bin/busybox", context / "busybox")
    subprocess.run(["docker", "build", "-q", "-t", TEST_IMAGE, str(context)], check=True,
                   capture_output=True)  # fmt: skip


def settings_env(settings: Settings, **changes: str) -> dict[str, str]:
    """An environment that gives a child process these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    for key in Settings.names():
        value = getattr(settings, key)
        if isinstance(value, tuple):
            env[f"APPLIANCE_{key.upper()}"] = ",".join(value)
        elif value is not None:
            env[f"APPLIANCE_{key.upper()}"] = str(value)
    env.update({f"APPLIANCE_{k.upper()}": v for k, v in changes.items()})
    return env


def slurm_available() -> None:
    """Fail (never skip) when the SLURM cluster of scripts/test is not there."""
    import pytest

    if not os.environ.get("SLURM_CONF") or shutil.which("sbatch") is None:
        pytest.fail("no SLURM cluster: run the tests with scripts/test (it starts one), or "
                    "start one with scripts/slurm-up and export SLURM_CONF")  # fmt: skip
