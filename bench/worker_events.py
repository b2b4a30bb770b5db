"""What one event costs the local worker pool when it has run many jobs.

    .venv/bin/python -m bench.worker_events [--finished 100000] [--events 50]

Fills a pool's state folder with ``--finished`` finished jobs (one small file each, as
the pool keeps them), then times ``--events`` job ends (``WorkerPool._ended``: the job's
file moved among the finished, the hourly prune, the wake-up of waiters), beside the
baseline: the design before it, one state file holding every job, rewritten at each
event. Also times a restart (reading the state back). A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from appliance.worker import JobFiles, WorkerJob, WorkerPool


def baseline_event(state_file: Path, jobs: dict[str, WorkerJob]) -> None:
    """The old pool's event: prune by walking every job, then rewrite the one state file."""
    cutoff = time.time() - 24 * 3600
    for handle in [h for h, j in jobs.items() if j.ended_at and j.ended_at < cutoff]:
        del jobs[handle]
    temporary = state_file.with_suffix(".tmp")
    temporary.write_text(json.dumps({h: asdict(j) for h, j in jobs.items()}))
    temporary.replace(state_file)


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:9.2f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--finished", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-worker."))
    now = time.time()
    finished = [WorkerJob(f"done{i:07d}", str(work / "jobs" / f"done{i}"), ["true"], {},
                          state="finished", pid=1, ended_at=now - 10 - i * 0.5)
                for i in range(args.finished)]  # fmt: skip

    began = time.monotonic()
    files = JobFiles(work / "state")
    for job in finished:
        files.finish(job)
    print(f"{args.finished:,} finished jobs written as files ({time.monotonic() - began:.0f} s)")

    pool = WorkerPool(4, work / "state")
    began = time.monotonic()
    pool.recover()
    restart = time.monotonic() - began
    ours = []
    for i in range(args.events):
        job = WorkerJob(
            f"new{i}", str(work / "jobs" / f"new{i}"), ["true"], {}, state="running", pid=1
        )
        pool.jobs[job.handle] = job
        began = time.perf_counter()
        pool._ended(job)
        ours.append(time.perf_counter() - began)

    everything = {j.handle: j for j in finished}
    state_file = work / "jobs.json"
    theirs = []
    for i in range(min(args.events, 10)):
        job = WorkerJob(f"old{i}", "/x", ["true"], {}, state="finished", pid=1, ended_at=now)
        everything[job.handle] = job
        began = time.perf_counter()
        baseline_event(state_file, everything)
        theirs.append(time.perf_counter() - began)
    size = state_file.stat().st_size / 1e6

    print(f"\none job's end, with {args.finished:,} finished jobs kept:")
    print(f"  baseline (one state file of every job, {size:.1f} MB)  {median_ms(theirs)}")
    print(f"  the pool (a file per job)                        {median_ms(ours)}")
    print(f"  ratio: {statistics.median(theirs) / statistics.median(ours):,.0f}x")
    print(f"  restart (reading the active jobs back): {restart * 1000:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
