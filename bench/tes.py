"""TES tasks through the whole appliance against the same container started by ``docker run``.

    .venv/bin/python -m bench.tes --mongodb-uri URI [--runs 15] [--batch 200] [--clients 16]

Starts a bundle like the tests' (nginx, web, scheduler with the docker runner, TES on for
an anonymous client, the busybox test image) and measures, through the proxy:

- creation rate: ``--batch`` one-executor tasks POSTed by ``--clients`` concurrent
  clients (tasks accepted per second), then the time until every one is COMPLETE;
- latency: ``--runs`` one-executor tasks (``echo hello``) one after the other, from
  ``POST /tasks`` to a ``GET`` (polled every 5 ms) that says COMPLETE;
- the floor: ``docker run --rm IMAGE echo hello`` of the same image, timed from outside,
  and the same with the isolation the docker runner adds (``--init``, no network, no
  capabilities, read-only root, a user, limits).

A measurement, not a test: it prints medians side by side and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tests.helpers import TEST_IMAGE
from tests.web.stack import running_stack

FINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}
TASK = {"executors": [{"image": TEST_IMAGE, "command": ["echo", "hello"]}]}
ISOLATED = ["--init", "--network", "none", "--cap-drop", "ALL", "--security-opt",
            "no-new-privileges:true", "--read-only", "--tmpfs", "/tmp:rw,size=64m",
            "--user", "1000:1000", "--memory", "1g", "--cpus", "1", "--pids-limit", "256"]  # fmt: skip


def docker_run(flags: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(["docker", "run", "--rm", *flags, TEST_IMAGE, "echo", "hello"],
                   check=True, capture_output=True)  # fmt: skip
    return time.perf_counter() - began


async def until_final(client: httpx.AsyncClient, base: str, task_id: str, poll: float) -> str:
    while True:
        state = (await client.get(f"{base}/tasks/{task_id}")).json()["state"]
        if state in FINAL:
            return str(state)
        await asyncio.sleep(poll)


async def measure(base: str, runs: int, batch: int, clients: int) -> dict[str, list[float]]:
    async with httpx.AsyncClient(timeout=60) as client:
        for _ in range(3):  # warm up: the image's layers, the first container
            reply = await client.post(f"{base}/tasks", json=TASK)
            await until_final(client, base, reply.json()["id"], 0.05)
        latencies = []
        for _ in range(runs):
            began = time.perf_counter()
            reply = await client.post(f"{base}/tasks", json=TASK)
            state = await until_final(client, base, reply.json()["id"], 0.005)
            assert state == "COMPLETE", state
            latencies.append(time.perf_counter() - began)
            await asyncio.sleep(0.2)

        ids: list[str] = []
        queue = list(range(batch))

        async def creator() -> None:
            while queue:
                queue.pop()
                reply = await client.post(f"{base}/tasks", json=TASK)
                assert reply.status_code == 200, reply.text
                ids.append(reply.json()["id"])

        began = time.perf_counter()
        await asyncio.gather(*(creator() for _ in range(clients)))
        created = time.perf_counter() - began
        states = [await until_final(client, base, task_id, 0.05) for task_id in ids]
        finished = time.perf_counter() - began
        assert states.count("COMPLETE") == batch, states
    return {"latency": latencies, "created": [created], "finished": [finished]}


def line(name: str, values: list[float]) -> str:
    return (f"{name:<42} median {statistics.median(values) * 1000:6.0f} ms   "
            f"min {min(values) * 1000:6.0f}   max {max(values) * 1000:6.0f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mongodb-uri", default="mongodb://127.0.0.1:27017/")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-tes."))
    runners = {"docker": "backend: docker\noptions: {stop_grace: 1}\n"}
    with running_stack(root, args.mongodb_uri, f"bench_tes_{int(time.time())}", runners=runners,
                       tes_enabled=True, tes_anonymous=True, tes_images=[TEST_IMAGE],
                       web_workers=2) as stack:  # fmt: skip
        results = asyncio.run(measure(f"{stack.proxy}/ga4gh/tes/v1", args.runs, args.batch,
                                      args.clients))  # fmt: skip
    docker_run([])
    bare = [docker_run([]) for _ in range(args.runs)]
    isolated = [docker_run(ISOLATED) for _ in range(args.runs)]
    print(f"one-executor task (echo hello in {TEST_IMAGE}), {args.runs} one after the other:")
    print(line("docker run --rm (floor)", bare))
    print(line("docker run --rm with the runner's isolation", isolated))
    print(line("appliance TES: POST -> GET says COMPLETE", results["latency"]))
    ours = statistics.median(results["latency"])
    print(f"{'':<42} {ours / statistics.median(bare):.2f} x the bare docker run, "
          f"{ours / statistics.median(isolated):.2f} x the isolated one")  # fmt: skip
    created, finished = results["created"][0], results["finished"][0]
    print(f"{args.batch} tasks by {args.clients} clients: created in {created:.2f} s "
          f"({args.batch / created:.0f} tasks/s); all COMPLETE after {finished:.1f} s "
          f"({args.batch / finished:.1f} tasks/s)")  # fmt: skip


if __name__ == "__main__":
    main()
