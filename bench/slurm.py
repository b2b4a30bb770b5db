"""Trivial jobs on the slurm runner against ``sbatch`` alone, on the same cluster.

    scripts/slurm-up && export SLURM_CONF=/tmp/appliance-slurm/slurm.conf
    .venv/bin/python -m bench.slurm --mongodb-uri URI [--runs 10] [--batch 50]

For each, N jobs one after the other (each after the previous one ended, after a random
pause so as not to lock onto slurmctld's one-second tick), timing submit -> the job's
script running (the floor's script writes the time; the appliance's job records
``started_at``... and the time its command wrote) and submit -> seen ended; then a batch
of ``--batch`` jobs at once, timing until every one has ended (throughput). The floor is
``sbatch --wrap`` polled with ``squeue --json`` every 50 ms; the appliance is its own
scheduler (slurm backend, mode none) with a job submitted to the database and a wake-up,
polled in the database every 50 ms. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from appliance.catalogue import load_catalogue
from appliance.forms import validate
from appliance.messaging import WakeSender
from appliance.planning import Planner
from appliance.runners.config import create_backend
from appliance.scheduler.core import Scheduler
from appliance.store import Store
from appliance.submission import record_job
from tests.helpers import make_settings

SERVICE = """\
appliance-version: 1
name: Trivial
runner: slurm
resources: {time-limit: 10m}
parameters:
  mark: {name: Mark, type: text}
command: sh -c 'date +%s.%N > "$0"'
args:
  mark: {arg: "$(value)"}
"""
FINAL = {"COMPLETED", "FAILED", "ERROR", "INTERRUPTED"}


def squeue_states() -> dict[str, str]:
    out = subprocess.run(["squeue", "--json"], capture_output=True, text=True, check=True).stdout
    return {str(j["job_id"]): j["job_state"] for j in json.loads(out)["jobs"]}


def floor_one(work: Path, index: int) -> tuple[float, float]:
    mark = work / f"floor-{index}.started"
    began = time.time()
    job = subprocess.run(["sbatch", "--parsable", "--output=/dev/null", "--wrap",
                          f"date +%s.%N > {mark}"], capture_output=True, text=True,
                         check=True).stdout.strip()  # fmt: skip
    while squeue_states().get(job) not in ("COMPLETED", "FAILED"):
        time.sleep(0.05)
    ended = time.time() - began
    return float(mark.read_text()) - began, ended


def floor_batch(work: Path, count: int) -> float:
    began = time.time()
    jobs = [subprocess.run(["sbatch", "--parsable", "--output=/dev/null", "--wrap", "true"],
                           capture_output=True, text=True, check=True).stdout.strip()
            for _ in range(count)]  # fmt: skip
    while True:
        states = squeue_states()
        if all(states.get(j) in ("COMPLETED", "FAILED") for j in jobs):
            return time.time() - began
        time.sleep(0.05)


async def appliance_runs(uri: str, runs: int, batch: int) -> tuple[list[float], list[float], float]:
    work = Path(tempfile.mkdtemp(prefix="bench-slurm."))
    settings = make_settings(work, uri, f"bench_slurm_{int(time.time())}", sweep_seconds=60)
    (settings.runners_dir / "slurm.yaml").write_text("backend: slurm\n")
    (settings.services_dir / "trivial.service.yaml").write_text(SERVICE)
    catalogue = load_catalogue(settings)
    assert catalogue.errors == [], catalogue.errors
    store = Store(uri, settings.mongodb_database)
    backend = create_backend(catalogue.runners["slurm"], settings)
    scheduler = Scheduler(settings, store, catalogue, {"slurm": backend})
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    sender = WakeSender(settings.scheduler_address)
    planner = Planner(catalogue.runners, {})
    service = catalogue.services["trivial"]

    async def submit(mark: str) -> str:
        values = await validate(service, {"mark": [mark]})
        job = await record_job(store, planner, service, values)
        await sender.notify("submitted", job["_id"], runner="slurm")
        return job["_id"]

    async def ended(job_id: str) -> None:
        while (await store.get_job(job_id) or {}).get("state") not in FINAL:
            await asyncio.sleep(0.05)

    starts, ends = [], []
    try:
        await asyncio.sleep(1)
        for index in range(runs):
            await asyncio.sleep(random.random())
            mark = str(work / "jobs" / f"mark-{index}")
            began = time.time()
            job_id = await submit(mark)
            await ended(job_id)
            ends.append(time.time() - began)
            starts.append(float(Path(mark).read_text()) - began)
        began = time.time()
        ids = [await submit(str(work / f"batch-{i}")) for i in range(batch)]
        for job_id in ids:
            await ended(job_id)
        throughput = time.time() - began
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        sender.close()
        await store.drop_database()
        await store.close()
    return starts, ends, throughput


def line(name: str, values: list[float]) -> str:
    return (f"{name:<34} median {statistics.median(values) * 1000:7.0f} ms   "
            f"min {min(values) * 1000:7.0f}   max {max(values) * 1000:7.0f}")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mongodb-uri", default="mongodb://127.0.0.1:27017/")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-slurm-floor."))
    floor = [floor_one(work, i) for i in range(args.runs) if not time.sleep(random.random())]
    floor_throughput = floor_batch(work, args.batch)
    starts, ends, throughput = await appliance_runs(args.mongodb_uri, args.runs, args.batch)
    print(f"{args.runs} trivial jobs one after the other, then {args.batch} at once:")
    print(line("sbatch alone: submit -> start", [s for s, _ in floor]))
    print(line("appliance: submit -> start", starts))
    print(line("sbatch alone: submit -> ended", [e for _, e in floor]))
    print(line("appliance: submit -> COMPLETED", ends))
    print(
        f"{args.batch} at once: sbatch alone {floor_throughput:.1f} s "
        f"({args.batch / floor_throughput:.1f} jobs/s); appliance {throughput:.1f} s "
        f"({args.batch / throughput:.1f} jobs/s, {floor_throughput / throughput:.0%} of the floor)"
    )


if __name__ == "__main__":
    asyncio.run(main())
