"""The operator's picture: the scheduler's own metrics, scraped while a load runs.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python -m bench.metrics --mongodb-uri mongodb://127.0.0.1:27017/ [--jobs 300]

Starts the real pieces (nginx from ``appliance proxy-config``, ``appliance web``,
``appliance scheduler`` with the docker runner capped at 4 containers, ``scheduler_metrics_bind``
set), submits ``--jobs`` jobs through the proxy in three bursts (each a busybox container that
sleeps 0.5 s), and scrapes the scheduler's ``/metrics`` every 0.5 s until all have ended. It
plots queue depth and running count (``appliance_jobs_held``) and throughput (the rate of
``appliance_jobs_ended_total``) over time into ``bench/results/metrics.png`` and keeps the
samples in ``bench/results/metrics.csv``. A picture of what the metrics show, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import tempfile
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import TEST_IMAGE
from tests.web.stack import free_port, running_stack

RESULTS = Path(__file__).resolve().parent / "results"
SERVICE = f"""\
appliance-version: 1
name: Half a second
image: {TEST_IMAGE}
resources: {{time-limit: 10m}}
command: sleep 0.5
"""


def read(text: str) -> dict[str, float]:
    """Queued, running and ended jobs in one scrape."""
    out = {"queued": 0.0, "running": 0.0, "ended": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "appliance_jobs_held" and sample.labels.get("state") in (
                "QUEUED",
                "RUNNING",
            ):
                out[sample.labels["state"].lower()] += sample.value
            if (
                sample.name == "appliance_jobs_ended_total"
                and sample.labels.get("service") == "half"
            ):
                out["ended"] += sample.value
    return out


async def submit(client: httpx.AsyncClient, count: int) -> None:
    gate = asyncio.Semaphore(16)  # sixteen clients at a time

    async def one() -> None:
        async with gate:
            answer = await client.post("/api/services/half/jobs", data={})
        assert answer.status_code == 202, answer.text

    await asyncio.gather(*(one() for _ in range(count)))


async def load(proxy: str, metrics_url: str, jobs: int) -> list[dict[str, float]]:
    rows: list[dict[str, float]] = []
    started = time.monotonic()
    bursts = [jobs // 2, jobs // 4, jobs - jobs // 2 - jobs // 4]
    async with (
        httpx.AsyncClient(base_url=proxy, timeout=60) as client,
        httpx.AsyncClient() as scraper,
    ):
        pending: list[asyncio.Task[None]] = []
        next_burst = 0.0
        while True:
            now = time.monotonic() - started
            if bursts and now >= next_burst:
                pending.append(asyncio.create_task(submit(client, bursts.pop(0))))
                next_burst = now + 15.0
            sample = read((await scraper.get(metrics_url)).text)
            rows.append({"t": round(now, 2), **sample})
            if not bursts and sample["ended"] >= jobs and all(t.done() for t in pending):
                break
            await asyncio.sleep(0.5)
        await asyncio.gather(*pending)
    return rows


def plot(rows: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [r["t"] for r in rows]
    rate = []  # over the last 2 s (4 scrapes), less noisy than scrape to scrape
    for index, row in enumerate(rows):
        first = rows[max(0, index - 4)]
        span = row["t"] - first["t"]
        rate.append((row["ended"] - first["ended"]) / span if span > 0 else 0.0)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    top.plot(times, [r["queued"] for r in rows], label="queued (appliance_jobs_held)")
    top.plot(times, [r["running"] for r in rows], label="running (appliance_jobs_held)")
    top.set_ylabel("jobs")
    top.legend(loc="upper right")
    top.set_title("The scheduler's metrics while 3 bursts of jobs run (docker, 4 slots)")
    bottom.plot(times, rate, color="tab:green", label="jobs ended per second")
    bottom.set_ylabel("jobs/s")
    bottom.set_xlabel("seconds")
    bottom.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mongodb-uri", default="mongodb://127.0.0.1:27017/")
    parser.add_argument("--jobs", type=int, default=300)
    options = parser.parse_args()
    port = free_port()
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_stack(
            Path(tmp),
            options.mongodb_uri,
            f"bench_metrics_{int(time.time())}",
            services={"half": SERVICE},
            runners={"docker": "backend: docker\noptions: {slots: 4}\n"},
            scheduler_metrics_bind=f"127.0.0.1:{port}",
        ) as stack,
    ):
        rows = asyncio.run(load(stack.proxy, f"http://127.0.0.1:{port}/metrics", options.jobs))
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "metrics.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=["t", "queued", "running", "ended"])
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, RESULTS / "metrics.png")
    most = max(r["queued"] for r in rows)
    print(
        f"{options.jobs} jobs in {rows[-1]['t']:.0f} s; deepest queue {most:.0f}; "
        f"samples in {RESULTS / 'metrics.csv'}, plot in {RESULTS / 'metrics.png'}"
    )


if __name__ == "__main__":
    main()
