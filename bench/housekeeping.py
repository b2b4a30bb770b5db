"""How long a submission waits for its start while housekeeping sweeps a big database.

    .venv/bin/python -m bench.housekeeping --mongodb-uri URI [--stored 100000] [--runs 15]

Stores ``--stored`` finished jobs (once per database name; reused), then runs a
scheduler (in-memory backend, so only the control plane is measured) whose housekeeping
sweeps without pause, and times ``--runs`` submissions from their wake-up to their
start (``queued_at``), in two designs side by side:

- ``inline`` (the baseline: the design before the housekeeping task): every dispatch
  round first waits for a sweep, as the scheduler's dispatch loop used to;
- ``task`` (the appliance): housekeeping in a task of its own.

Both sweep all the time (every round a full one, retention included), so every
submission meets a sweep. Prints medians, p90 and max, and how long one round takes on
its own. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from appliance.aio import wait_event
from appliance.catalogue import load_catalogue
from appliance.forms import validate
from appliance.messaging import WakeSender
from appliance.planning import Planner
from appliance.runners.memory import MemoryBackend
from appliance.scheduler.core import Scheduler
from appliance.scheduler.housekeeping import Housekeeping
from appliance.store import Store, new_id, utcnow
from appliance.submission import record_job
from appliance.volumes import Volumes
from tests.helpers import make_settings, write_probe


def fill(uri: str, database: str, count: int) -> None:
    db: Any = MongoClient(uri)[database]
    if db.jobs.estimated_document_count() >= count:
        return
    db.jobs.drop()
    now = utcnow()
    batch = []
    for i in range(count):
        at = now - timedelta(hours=1, seconds=i)
        batch.append({"_id": new_id(), "kind": "service", "service": "probe",
                      "state": "COMPLETED", "submitted_at": at, "completed_at": at,
                      "parameters": {"program": "echo"}, "runner": "mem", "exit_code": 0,
                      "outputs": [], "lease_owner": None, "lease_expires": None,
                      "lease_gen": 1, "claims": 1})  # fmt: skip
        if len(batch) == 1000:
            db.jobs.insert_many(batch)
            batch = []
    if batch:
        db.jobs.insert_many(batch)


class Inline(Scheduler):
    """The baseline: a sweep before every dispatch round, in the same loop."""

    async def _dispatch_loop(self) -> None:
        chores = Housekeeping(self, interval=0)
        while True:
            self.kick.clear()
            await chores.round()
            await self.dispatch()
            await wait_event(self.kick, self.settings.sweep_seconds)


class Idle(Housekeeping):
    async def run(self) -> None:
        await asyncio.Event().wait()


async def measure(uri: str, database: str, design: str, runs: int) -> list[float]:
    work = Path(tempfile.mkdtemp(prefix="bench-housekeeping."))
    settings = make_settings(work, uri, database, sweep_seconds=60, lease_seconds=30)
    service = write_probe(settings, "mem", backend="memory")
    catalogue = load_catalogue(settings)
    store = Store(uri, database, timeout_ms=120_000, retry_seconds=120)
    backend = MemoryBackend(Volumes.local(settings))
    kind = Inline if design == "inline" else Scheduler
    scheduler = kind(settings, store, catalogue, {"mem": backend})
    chores = Idle(scheduler) if design == "inline" else Housekeeping(scheduler, interval=0)
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop, housekeeping=chores))
    sender = WakeSender(settings.scheduler_address)
    planner = Planner(catalogue.runners, {})
    waits: list[float] = []
    try:
        await asyncio.sleep(3)  # sweeping by now
        for _ in range(runs):
            values = await validate(service, {"program": ["echo"], "arg": ["x"]})
            job = await record_job(store, planner, service, values)
            began = time.monotonic()
            await sender.notify("submitted", job["_id"], runner="mem")
            while not (await store.get_job(job["_id"]) or {}).get("queued_at"):
                await asyncio.sleep(0.005)
            waits.append(time.monotonic() - began)
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.wait_for(task, 300)
        sender.close()
        await store.close()
    return waits


async def time_rounds(uri: str, database: str) -> dict[str, float]:
    """One housekeeping round on its own: a full one (retention too), then a light one."""
    work = Path(tempfile.mkdtemp(prefix="bench-housekeeping."))
    settings = make_settings(work, uri, database, lease_seconds=30)
    write_probe(settings, "mem", backend="memory")
    store = Store(uri, database, timeout_ms=120_000, retry_seconds=120)
    scheduler = Scheduler(settings, store, load_catalogue(settings),
                          {"mem": MemoryBackend(Volumes.local(settings))})  # fmt: skip
    chores = Housekeeping(scheduler)
    times = {}
    try:
        for name in ("a full round (retention too) takes", "an ordinary round takes"):
            began = time.monotonic()
            await chores.round()
            times[name] = time.monotonic() - began
    finally:
        await store.close()
    return times


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return (f"median {statistics.median(values) * 1000:8.0f} ms   p90 {p90 * 1000:8.0f} ms   "
            f"max {max(values) * 1000:8.0f} ms")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mongodb-uri", default="mongodb://127.0.0.1:27017/")
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    database = f"bench_housekeeping_{args.stored}"
    began = time.monotonic()
    await asyncio.to_thread(fill, args.mongodb_uri, database, args.stored)
    print(f"{args.stored:,} finished jobs stored ({time.monotonic() - began:.0f} s)")
    alone = await time_rounds(args.mongodb_uri, database)
    results = {}
    for design in ("inline", "task"):
        results[design] = await measure(args.mongodb_uri, database, design, args.runs)
    print(f"\nsubmission -> start, while housekeeping sweeps {args.stored:,} stored jobs "
          f"({args.runs} submissions each):")  # fmt: skip
    print(f"  inline (baseline: sweep in the dispatch loop)  {summary(results['inline'])}")
    print(f"  task   (the appliance: housekeeping apart)     {summary(results['task'])}")
    for name, seconds in alone.items():
        print(f"  {name:<47}{seconds * 1000:8.0f} ms")
    ratio = statistics.median(results["inline"]) / statistics.median(results["task"])
    print(f"  median wait, baseline / appliance: {ratio:.0f}x")


if __name__ == "__main__":
    asyncio.run(main())
