"""The scheduler's metrics, scraped over HTTP before and after jobs that complete, fail and
are cancelled on a real Docker engine: each ending counted once, by its state."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance.catalogue import load_catalogue
from appliance.forms import validate
from appliance.planning import Planner
from appliance.runners.config import create_backend
from appliance.scheduler.core import Scheduler
from appliance.store import Store
from appliance.submission import record_job
from tests.helpers import TEST_IMAGE, build_test_image, make_settings, wait_final, wait_state
from tests.web.stack import free_port

pytestmark = pytest.mark.anyio

SERVICE = f"""\
appliance-version: 1
name: Ends as asked
image: {TEST_IMAGE}
parameters:
  how: {{name: How, type: choice, choices: {{ok: "true", fail: "false", slow: "sleep 60"}}}}
command: sh -c
args:
  how: {{arg: "$(value)"}}
"""


def value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def ended(scraped: str) -> float:
    """How many jobs of the service "ends" the scrape counts as ended, in any state."""
    return sum(value(scraped, "appliance_jobs_ended_total", service="ends", runner="docker",
                     state=state) for state in ("COMPLETED", "FAILED", "INTERRUPTED"))  # fmt: skip


async def test_jobs_are_counted_as_they_start_and_end(
    tmp_path: Path, mongodb_uri: str, database_name: str, store: Store
) -> None:
    build_test_image(tmp_path)
    port = free_port()
    settings = make_settings(tmp_path, mongodb_uri, database_name,
                             scheduler_metrics_bind=f"127.0.0.1:{port}")  # fmt: skip
    (settings.runners_dir / "docker.yaml").write_text("backend: docker\noptions: {stop_grace: 1}\n")
    (settings.services_dir / "ends.service.yaml").write_text(SERVICE)
    catalogue = load_catalogue(settings)
    backend = create_backend(catalogue.runners["docker"], settings)
    scheduler = Scheduler(settings, store, catalogue, {"docker": backend})
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(50):
                try:
                    before = (await client.get(url)).text
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
            service = catalogue.services["ends"]
            ids = {}
            for how in ("ok", "fail", "slow"):
                values = await validate(service, {"how": [how]})
                job = await record_job(store, Planner(catalogue.runners, {}), service, values)
                ids[how] = str(job["_id"])
            scheduler.kick.set()
            await wait_state(store, ids["slow"], "RUNNING", timeout=60)
            during = (await client.get(url)).text
            await store.request_cancel(ids["slow"])
            scheduler.poke.set()
            states = {how: (await wait_final(store, job_id, timeout=60))["state"]
                      for how, job_id in ids.items()}  # fmt: skip
            # A job's end is in the database a moment before its count is: scrape until
            # the three have been counted (or give up after 10 s and let the asserts say).
            for _ in range(100):
                after = (await client.get(url)).text
                if ended(after) >= ended(before) + 3:
                    break
                await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await backend.close()
    assert states == {"ok": "COMPLETED", "fail": "FAILED", "slow": "INTERRUPTED"}
    assert value(during, "appliance_jobs_held", runner="docker", state="RUNNING") >= 1
    for state in ("COMPLETED", "FAILED", "INTERRUPTED"):
        labels = {"service": "ends", "runner": "docker", "state": state}
        grew = value(after, "appliance_jobs_ended_total", **labels) - value(
            before, "appliance_jobs_ended_total", **labels)  # fmt: skip
        assert grew == 1, state
    started = {"service": "ends", "runner": "docker"}
    assert value(after, "appliance_jobs_started_total", **started) - value(
        before, "appliance_jobs_started_total", **started) == 3  # fmt: skip
    assert value(after, "appliance_job_wait_seconds_count", service="ends") - value(
        before, "appliance_job_wait_seconds_count", service="ends") == 3  # fmt: skip
    assert value(after, "appliance_claim_duration_seconds_count") > value(
        before, "appliance_claim_duration_seconds_count")  # fmt: skip
