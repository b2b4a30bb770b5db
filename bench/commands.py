"""Database commands per docker job on the scheduler's path, counted by the driver.

    python -m bench.commands --mongodb-uri URI [--jobs 40] [--slots 4]

Records ``--jobs`` trivial docker jobs (as the web process would, before anything is
counted), then runs a scheduler with a real docker runner in this process until every job
has ended, and counts each command its MongoDB client sent (a pymongo command listener),
by name: claims, state changes, lease renewals, cancel checks, everything. Prints the
count per job and the total. Needs a Docker engine and the busybox test image (built if
missing).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pymongo import monitoring

from appliance.catalogue import load_catalogue
from appliance.forms import validate
from appliance.runners.config import create_backend
from appliance.scheduler.core import Scheduler
from appliance.states import JobState
from appliance.store import Store
from appliance.submission import record_job
from tests.helpers import TEST_IMAGE, build_test_image, make_settings, planner_for

SERVICE = f"""\
appliance-version: 1
name: Trivial
image: {TEST_IMAGE}
runner: docker
command: "true"
"""
QUIET = {"hello", "isMaster", "ismaster", "ping", "buildInfo", "endSessions"}


class Census(monitoring.CommandListener):
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in QUIET:
            target = event.command.get(event.command_name)
            on = f" {target}" if isinstance(target, str) else ""
            self.counts[f"{event.command_name}{on}"] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def run(uri: str, jobs: int, slots: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-commands-"))
    build_test_image(root)
    settings = make_settings(root, uri, f"bench_commands_{int(time.time())}", lease_seconds=30,
                             sweep_seconds=5)  # fmt: skip
    (settings.runners_dir / "docker.yaml").write_text(
        f"backend: docker\noptions: {{slots: {slots}}}\n"
    )
    (settings.services_dir / "trivial.service.yaml").write_text(SERVICE)
    catalogue = load_catalogue(settings)
    service = catalogue.services["trivial"]
    web = Store(uri, settings.mongodb_database)
    await web.ensure_indexes()
    ids = []
    for _ in range(jobs):  # recorded as the web process records them: not counted
        job = await record_job(web, planner_for(service), service, await validate(service, {}))
        ids.append(str(job["_id"]))
    census = Census()
    monitoring.register(census)  # the clients made from now on: the scheduler's
    store = Store(uri, settings.mongodb_database)
    backend = create_backend(catalogue.runners["docker"], settings)
    scheduler = Scheduler(settings, store, catalogue, {"docker": backend}, listen=False)
    stop = asyncio.Event()
    began = time.monotonic()
    task = asyncio.create_task(scheduler.run(stop))
    while True:
        found = [await web.get_job(i) for i in ids]
        if all(j is not None and JobState(j["state"]).finished for j in found):
            break
        await asyncio.sleep(0.2)
    seconds = time.monotonic() - began
    stop.set()
    await task
    await backend.close()
    states = Counter(str(j["state"]) for j in found if j is not None)
    await web.drop_database()
    await store.close()
    await web.close()
    return {"jobs": jobs, "seconds": seconds, "states": dict(states), "counts": dict(census.counts)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mongodb-uri", required=True)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--slots", type=int, default=4)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.mongodb_uri, args.jobs, args.slots))
    counts, jobs = result["counts"], result["jobs"]
    print(f"{jobs} docker jobs in {result['seconds']:.1f} s, ended: {result['states']}")
    print(f"{'command':<16} {'total':>7} {'per job':>8}")
    for name, count in sorted(counts.items(), key=lambda item: -item[1]):
        print(f"{name:<16} {count:>7} {count / jobs:>8.2f}")
    total = sum(counts.values())
    print(f"{'all':<16} {total:>7} {total / jobs:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
