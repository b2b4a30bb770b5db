"""Where a batch of docker jobs spends its time: the appliance beside bare ``docker run``.

    .venv/bin/python -m bench.where --mongodb-uri mongodb://127.0.0.1:27017/ [--jobs 100]

Runs ``--jobs`` trivial docker jobs through the appliance (web, scheduler and the docker
runner with 4 slots, as ``bench/run`` sets them up), then the same number of bare
``docker run --rm`` with the runner's isolation flags, 4 at a time. For each it records the
engine's container events (create, start, die, destroy) and the CPU time every process
used from /proc, and prints: the wall time; the median create -> start, start -> die and
die -> destroy of a container and the gap from a container's death to the next one's
creation; CPU-seconds by process (dockerd, containerd, the shims and runc, the database
server, the appliance's processes). On a machine whose cores the batch saturates, wall
time follows total CPU: what the control plane spends per job is what the batch loses.

With ``--submissions SECONDS`` it measures the web tier instead, as ``bench/run`` does
(web processes only, 2 workers each, wrk posting a 1 KB FASTA from 32 connections), for
the appliance and for the previous system: submissions/s, and the CPU each process used
per submission (the web workers, the database server, wrk).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from bench import measure
from bench.bench import TRIVIAL_IMAGE
from bench.systems import Config, System, make
from tests.helpers import TEST_IMAGE, build_test_image

TICKS = os.sysconf("SC_CLK_TCK")
NAMES = ("dockerd", "containerd-shim", "containerd", "ferretdb", "mongod ", "appliance web",
         "appliance scheduler", "appliance worker", "docker run", "docker events", "wrk",
         "gunicorn", "webfloor serve", "bench.where")  # fmt: skip  # the last: this client (and the docker CLIs it ran)


def processes() -> dict[str, tuple[str, float]]:
    """pid -> (what it is, CPU-seconds so far, its waited-for children's included)."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        seconds = sum(int(f) for f in fields[11:15]) / TICKS
        found[pid] = (next((n for n in NAMES if n in command), "other"), seconds)
    return found


def machine() -> tuple[float, float]:
    """CPU-seconds of all cores so far: in all, and idle."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) / TICKS, (values[3] + values[4]) / TICKS


def observe(work: Callable[[], object]) -> dict[str, Any]:
    """Run ``work`` while recording container events and CPU use."""
    events: list[dict[str, Any]] = []
    stream = subprocess.Popen(["docker", "events", "--format", "{{json .}}",
                               "--filter", "type=container"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert stream.stdout is not None
    lines = stream.stdout
    reader = threading.Thread(target=lambda: events.extend(json.loads(x) for x in lines),
                              daemon=True)  # fmt: skip
    reader.start()
    time.sleep(0.5)
    before, cores_before = processes(), machine()
    started = time.time()
    work()
    wall = time.time() - started
    after, cores_after = processes(), machine()
    time.sleep(2)  # the last destroy events
    stream.terminate()
    reader.join(2)
    cpu: dict[str, float] = {}
    for pid, (name, seconds) in after.items():
        cpu[name] = cpu.get(name, 0.0) + seconds - before.get(pid, (name, 0.0))[1]
    total = cores_after[0] - cores_before[0]
    busy = total - (cores_after[1] - cores_before[1])
    return {"wall": wall, "events": events, "cpu": cpu, "busy": busy, "cores": total}


def report(name: str, seen: dict[str, Any]) -> None:
    containers: dict[str, dict[str, float]] = {}
    for event in seen["events"]:
        if event.get("Action") in ("create", "start", "die", "destroy"):
            containers.setdefault(event["id"], {})[event["Action"]] = event["timeNano"] / 1e9
    whole = [c for c in containers.values() if {"create", "start", "die"} <= set(c)]

    def median_ms(first: str, then: str) -> str:
        gaps = [c[then] - c[first] for c in whole if first in c and then in c]
        return f"{statistics.median(gaps) * 1000:.0f} ms" if gaps else "-"

    creations = sorted(c["create"] for c in whole)
    refill = [next(t for t in creations if t > c["die"]) - c["die"] for c in whole
              if any(t > c["die"] for t in creations)]  # fmt: skip
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in sorted(seen["cpu"].items(), key=lambda kv: -kv[1])
                    if v >= 0.05)  # fmt: skip
    print(f"{name}: {len(whole)} containers in {seen['wall']:.1f} s")
    print(f"  create -> start {median_ms('create', 'start')}, start -> die "
          f"{median_ms('start', 'die')}, die -> destroy {median_ms('die', 'destroy')}, "
          f"a death -> the next creation "
          f"{statistics.median(refill) * 1000 if refill else float('nan'):.0f} ms")  # fmt: skip
    print(f"  CPU-seconds: {seen['busy']:.1f} busy of {seen['cores']:.1f}; {cpu}")


def submissions(mongodb_uri: str, seconds: float) -> None:
    """The web tier of each system under wrk's submissions: CPU by process."""
    for name in ("appliance", "slivka"):
        home = Path(tempfile.mkdtemp(prefix=f"appliance-where-{name}."))
        database = f"bench_where_{name}"
        MongoClient(mongodb_uri).drop_database(database)
        system = make(name, Config(mongodb_uri), home, database)
        system.start(roles=("web",))
        try:
            time.sleep(3)
            result: dict[str, Any] = {}

            def load(s: System = system, into: dict[str, Any] = result) -> None:
                into.update(measure.submissions_per_s(
                    s, "trivial", connections=32, seconds=seconds, sample=lambda: None))  # fmt: skip

            seen = observe(load)
        finally:
            system.stop()
            MongoClient(mongodb_uri).drop_database(database)
        report_submissions(name, result, seen, seconds)


def report_submissions(name: str, result: dict[str, Any], seen: dict[str, Any],
                       seconds: float) -> None:  # fmt: skip
    """Submissions/s of one load, and the CPU each process spent per submission."""
    done = max(result.get("requests", 0), 1)
    per = ", ".join(f"{k} {v / done * 1000:.2f}" for k, v in
                    sorted(seen["cpu"].items(), key=lambda kv: -kv[1]) if v >= 0.05)  # fmt: skip
    print(f"{name}: {result.get('requests_per_s', 0):.0f} submissions/s "
          f"({done} in {seconds:.0f} s, {result.get('errors')} errors); "
          f"CPU {seen['busy']:.1f} busy of {seen['cores']:.1f} s")  # fmt: skip
    print(f"  CPU-ms per submission: {seen['busy'] / done * 1000:.2f} in all; {per}")


def trivial_image(scratch: Path) -> None:
    """The trivial jobs' image (bench/run builds it too): the tests' busybox image, tagged."""
    found = subprocess.run(["docker", "image", "inspect", TRIVIAL_IMAGE], capture_output=True)
    if found.returncode != 0:
        build_test_image(scratch)
        subprocess.run(["docker", "tag", TEST_IMAGE, TRIVIAL_IMAGE], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mongodb-uri", required=True)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--submissions", type=float, metavar="SECONDS",
                        help="measure the web tier under submissions instead")  # fmt: skip
    args = parser.parse_args(argv)
    if args.submissions:
        submissions(args.mongodb_uri, args.submissions)
        return 0
    home = Path(tempfile.mkdtemp(prefix="appliance-where."))
    trivial_image(home)
    database = "bench_where"
    MongoClient(args.mongodb_uri).drop_database(database)
    system = make("appliance", Config(args.mongodb_uri, slots=args.slots), home, database)
    system.setup()
    system.start()
    try:
        time.sleep(3)
        seen = observe(lambda: measure.batch(system, "trivial-docker", args.jobs,
                                             sample=lambda: None))  # fmt: skip
    finally:
        system.stop()
        MongoClient(args.mongodb_uri).drop_database(database)
    report("appliance", seen)
    workdir = home / "bare"
    workdir.mkdir()
    workdir.chmod(0o755)  # the container's user reads its input
    (workdir / "input.fa").write_bytes(measure.fasta_1k())
    bare = observe(lambda: measure.bare_batch(TRIVIAL_IMAGE, ["cat", "input.fa"],
                                              args.jobs, args.slots, workdir, isolated=True))  # fmt: skip
    report("bare docker run, same flags", bare)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
