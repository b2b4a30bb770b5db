"""Does one large submission stall the web process? /healthz latency during it.

    .venv/bin/python -m bench.stall --mongodb-uri URI [--before PATH] [--rounds 5]

Starts ``appliance web`` (one worker, no proxy: the process itself is measured) from this
tree, and with ``--before`` from another checkout (say ``git worktree add /tmp/before
REV``), each against its own database and folders, and while one client sends

- ``big``: a job submission with one 90 MB file (parsed, written and media-type sniffed);
- ``parts``: a job submission with 300 file parts of 100 KB each;

another (in a thread of its own, so the sender never delays it) asks ``GET /healthz``
every 10 ms. Prints, per tree and case, the median, p99 and
largest /healthz latency while the submission was under way, the submission's own time
and status, and the idle /healthz median as the baseline.

A measurement, not a test: numbers from a shared machine are noisy; compare medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

SERVICE = """\
appliance-version: 1
name: Takes a file
image: none
runner: local
parameters:
  input: {name: Input, type: "file[]", required: false}
command: "true"
outputs: {}
"""


def start_web(tree: Path, home: Path, uri: str, port: int) -> subprocess.Popen[bytes]:
    for sub in ("uploads", "jobs", "services", "runners"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    (home / "services" / "take.service.yaml").write_text(SERVICE)
    (home / "runners" / "local.yaml").write_text("backend: local\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env.update({
        "PYTHONPATH": str(tree), "APPLIANCE_MONGODB_URI": uri,
        "APPLIANCE_MONGODB_DATABASE": f"stall_{port}", "APPLIANCE_UPLOADS_DIR": str(home / "uploads"),
        "APPLIANCE_JOBS_DIR": str(home / "jobs"), "APPLIANCE_SERVICES_DIR": str(home / "services"),
        "APPLIANCE_RUNNERS_DIR": str(home / "runners"), "APPLIANCE_WEB_BIND": f"127.0.0.1:{port}",
        "APPLIANCE_UPLOAD_MAX_BYTES": "100M", "APPLIANCE_LOG_LEVEL": "WARNING",
        "APPLIANCE_SCHEDULER_ADDRESS": f"ipc://{home}/scheduler.sock",
    })  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "appliance", "web"], env=env, cwd=tree)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.terminate()
    raise SystemExit(f"the web process from {tree} did not start")


def body(case: str) -> tuple[bytes, str]:
    boundary = "stallboundary"
    if case == "big":
        parts = [(b">big\n" + b"ACGT" * (90 * 1024 * 1024 // 4))]
    else:
        parts = [b">p\n" + b"ACGT" * 25_600 for _ in range(300)]
    data = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="input"; filename="f{i}.fa"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + part
            + b"\r\n"
            for i, part in enumerate(parts)
        )
        + f"--{boundary}--\r\n".encode()
    )
    return data, f"multipart/form-data; boundary={boundary}"


def measure(base: str, data: bytes, content_type: str) -> tuple[list[float], float, int]:
    """The submission from this thread; /healthz polled from another (its own client), so
    that the sender's work never delays the probe."""
    latencies: list[float] = []
    done = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=120) as client:
            while not done.is_set():
                began = time.perf_counter()
                client.get(f"{base}/healthz")
                latencies.append((time.perf_counter() - began) * 1000)
                time.sleep(0.01)

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.05)
    try:
        with httpx.Client(timeout=120) as client:
            began = time.perf_counter()
            response = client.post(f"{base}/api/services/take/jobs", content=data,
                                   headers={"content-type": content_type})  # fmt: skip
            took = time.perf_counter() - began
    finally:
        done.set()
        poller.join()
    return latencies, took, response.status_code


async def idle(base: str) -> float:
    async with httpx.AsyncClient() as client:
        times = []
        for _ in range(50):
            began = time.perf_counter()
            await client.get(f"{base}/healthz")
            times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mongodb-uri", required=True)
    parser.add_argument("--before", type=Path, help="another checkout, measured the same way")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    trees = {"this tree": Path(__file__).resolve().parent.parent}
    if args.before:
        trees["before"] = args.before.resolve()
    print(f"{'tree':10} {'case':6} {'idle ms':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'request s':>10} status")  # fmt: skip
    for index, (name, tree) in enumerate(trees.items()):
        with tempfile.TemporaryDirectory() as home:
            port = 18800 + index
            web = start_web(tree, Path(home), args.mongodb_uri, port)
            base = f"http://127.0.0.1:{port}"
            try:
                for case in ("big", "parts"):
                    samples: list[float] = []
                    took, statuses = [], set()
                    data, content_type = body(case)
                    for _ in range(args.rounds):
                        latencies, seconds, status = measure(base, data, content_type)
                        samples += latencies
                        took.append(seconds)
                        statuses.add(status)
                    samples.sort()
                    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
                    print(f"{name:10} {case:6} {asyncio.run(idle(base)):8.1f} "
                          f"{statistics.median(samples):8.1f} {p99:8.1f} {samples[-1]:8.1f} "
                          f"{statistics.median(took):10.2f} {sorted(statuses)}")  # fmt: skip
            finally:
                web.terminate()
                web.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
