"""What a job can and cannot do inside its container, run through the real scheduler and
Docker engine: every escape attempt fails alone, and a normal job beside it completes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from appliance.catalogue import Catalogue, load_catalogue
from appliance.forms import FileRef, validate
from appliance.plan import UPLOADS, Location
from appliance.planning import Planner
from appliance.runners.config import create_backend
from appliance.scheduler.core import Scheduler
from appliance.settings import Settings
from appliance.store import Store
from appliance.submission import record_job
from tests.helpers import TEST_IMAGE, build_test_image, make_settings, wait_final

pytestmark = pytest.mark.anyio

ACTIONS = {
    "interfaces": "ls /sys/class/net > out.txt",
    "write-root": "echo owned > /etc/owned",
    "write-above": "echo owned > /job/../owned",
    "write-input": "echo owned >> inputs/data",
    "fork-bomb": "for i in $(seq 200); do sleep 5 & done; wait",
    "capabilities": "grep -E 'CapEff|NoNewPrivs' /proc/self/status > out.txt",
    "whoami": "id > out.txt",
    "sleep": "sleep 60",
    "ok": "echo fine > out.txt",
}
PROBE = f"""\
appliance-version: 1
name: Tries things
image: {TEST_IMAGE}
resources: {{memory: 64M, pids: 16, time-limit: 3s}}
parameters:
  action: {{name: Action, type: choice, choices: {json.dumps(ACTIONS)}}}
  data: {{name: Data, type: file, required: false}}
command: sh -c
args:
  action: {{arg: "$(value)"}}
outputs:
  out: {{path: out.txt, media-type: text/plain}}
"""


@pytest.fixture
async def rig(
    tmp_path: Path, mongodb_uri: str, database_name: str, store: Store
) -> AsyncIterator[tuple[Settings, Catalogue]]:
    build_test_image(tmp_path)
    settings = make_settings(tmp_path, mongodb_uri, database_name)
    (settings.runners_dir / "docker.yaml").write_text("backend: docker\noptions: {stop_grace: 2}\n")
    (settings.services_dir / "probe.service.yaml").write_text(PROBE)
    catalogue = load_catalogue(settings)
    assert catalogue.errors == [], catalogue.errors
    backend = create_backend(catalogue.runners["docker"], settings)
    scheduler = Scheduler(settings, store, catalogue, {"docker": backend})
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    yield settings, catalogue
    stop.set()
    await asyncio.wait_for(task, 60)
    await backend.close()


async def run(store: Store, catalogue: Catalogue, action: str, **raw: Any) -> str:
    service = catalogue.services["probe"]
    values = await validate(service, {"action": [action], **{k: [v] for k, v in raw.items()}})
    planner = Planner(catalogue.runners, {})
    return str((await record_job(store, planner, service, values))["_id"])


async def test_escape_attempts_fail_alone(rig: tuple[Settings, Catalogue], store: Store) -> None:
    settings, catalogue = rig
    data = settings.uploads_dir / "data"
    data.write_text("original\n")
    attempts = {action: await run(store, catalogue, action) for action in
                ("write-root", "write-above", "fork-bomb", "sleep")}  # fmt: skip
    attempts["write-input"] = await run(
        store,
        catalogue,
        "write-input",
        data=FileRef("data", data, "data", location=Location(UPLOADS, "data")),
    )
    normal = await run(store, catalogue, "ok")
    jobs = {
        action: await wait_final(store, job_id, timeout=90) for action, job_id in attempts.items()
    }
    for action, job in jobs.items():
        assert job["state"] == "FAILED", (action, job)
    assert "time limit" in str(jobs["sleep"]["error"])
    stderr = {a: (settings.jobs_dir / j["_id"] / "stderr").read_text() for a, j in jobs.items()}
    assert "Read-only file system" in stderr["write-root"]
    assert "Read-only file system" in stderr["write-above"]
    assert (
        "Read-only file system" in stderr["write-input"]
        or "Permission denied" in stderr["write-input"]
    )
    assert "can't fork" in stderr["fork-bomb"]
    assert data.read_text() == "original\n"
    assert not (settings.jobs_dir / "owned").exists()
    job = await wait_final(store, normal, timeout=60)
    assert job["state"] == "COMPLETED"
    assert (settings.jobs_dir / normal / "out.txt").read_text() == "fine\n"


async def test_no_network_no_capabilities_no_root(
    rig: tuple[Settings, Catalogue], store: Store
) -> None:
    settings, catalogue = rig
    results = {}
    for action in ("interfaces", "capabilities", "whoami"):
        job = await wait_final(store, await run(store, catalogue, action), timeout=60)
        assert job["state"] == "COMPLETED", job
        results[action] = (settings.jobs_dir / job["_id"] / "out.txt").read_text()
    assert results["interfaces"].split() == ["lo"]  # no interface leads anywhere
    assert "CapEff:\t0000000000000000" in results["capabilities"]
    assert "NoNewPrivs:\t1" in results["capabilities"]
    assert results["whoami"].startswith(
        "uid=1000(appliance) gid=1000(appliance)"
    )  # named: identity.py
