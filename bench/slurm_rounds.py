"""What one status round of the slurm runner costs on a busy cluster, beside the old way.

    scripts/slurm-up && export SLURM_CONF=/tmp/appliance-slurm/slurm.conf
    .venv/bin/python -m bench.slurm_rounds [--ours 20] [--foreign 0,1000,5000] [--rounds 10]

A real cluster looks busy: other users' jobs fill the queue. This submits ``--foreign``
jobs as another user (``appliance-bench-other``, made if missing), held so that they stay
PENDING and take no resources, spread over the cluster's partitions; then ``--ours`` jobs
of the appliance's slurm backend (``sleep``); then times ``--rounds`` status rounds of the
backend (its ``status_interval`` set to 0, so that every round asks SLURM), and as many
rounds of the old way (one ``squeue --json`` of the whole cluster, parsed). Per round:
the SLURM commands run, the bytes they answered, the CPU of this process (the
scheduler's own work) and of its children (the SLURM commands: squeue 22.05 fetches every
job from slurmctld when asked about several ids and filters them itself), and
slurmctld's CPU. Medians. A measurement, not a
test: the appliance's cost must not grow with the foreign jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pwd
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from appliance.plan import Plan, Step, job_location
from appliance.runners.base import StepRun
from appliance.runners.config import create_backend, parse_runner_config
from appliance.runners.slurm import SlurmBackend
from appliance.store import new_id
from tests.helpers import make_settings

OTHER = "appliance-bench-other"


def cpu() -> tuple[float, float]:
    """CPU-seconds of this process, and of its finished children (the SLURM commands)."""
    mine = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime, kids.ru_utime + kids.ru_stime


def slurmctld_cpu() -> float:
    """slurmctld's CPU-seconds (root on the controller's host), or NaN."""
    found = subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True, text=True)
    pids = found.stdout.split()
    if not pids:
        return float("nan")
    fields = Path(f"/proc/{pids[0]}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def partitions() -> list[str]:
    out = subprocess.run(["sinfo", "--noheader", "--format=%R"], capture_output=True, text=True)
    return sorted(set(out.stdout.split())) or ["debug"]


def ensure_other_user() -> None:
    try:
        pwd.getpwnam(OTHER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", OTHER], check=True)


def foreign(count: int) -> None:
    """Hold ``count`` jobs of another user in the queue (beyond those already there)."""
    have = subprocess.run(["squeue", "--noheader", f"--user={OTHER}", "--format=%i"],
                          capture_output=True, text=True).stdout.split()  # fmt: skip
    names = partitions()
    missing = count - len(have)
    if missing <= 0:
        return
    script = "\n".join(
        f"sbatch --hold --quiet --output=/dev/null --partition={names[i % len(names)]} "
        f"--job-name=other-{i} --wrap 'sleep 1000'"
        for i in range(len(have), count)
    )
    began = time.monotonic()
    subprocess.run(["runuser", "-u", OTHER, "--", "bash", "-s"], input=script, text=True,
                   check=True, cwd="/tmp", env={**os.environ, "HOME": "/tmp"})  # fmt: skip
    print(f"  {missing} foreign jobs submitted in {time.monotonic() - began:.0f} s")


async def measure(backend: SlurmBackend, handles: list[str], rounds: int) -> dict[str, float]:
    backend.status_interval = 0.0
    samples: dict[str, list[float]] = {"rpcs": [], "bytes": [], "cpu_ms": [], "kids_ms": [],
                                       "ctld_ms": []}  # fmt: skip
    for _ in range(rounds):
        calls, parsed = sum(backend.calls.values()), backend.parsed_bytes
        began, ctld = cpu(), slurmctld_cpu()
        await backend.status(handles)
        ended = cpu()
        samples["cpu_ms"].append((ended[0] - began[0]) * 1000)
        samples["kids_ms"].append((ended[1] - began[1]) * 1000)
        samples["ctld_ms"].append((slurmctld_cpu() - ctld) * 1000)
        samples["rpcs"].append(sum(backend.calls.values()) - calls)
        samples["bytes"].append(backend.parsed_bytes - parsed)
    return {k: statistics.median(v) for k, v in samples.items()}


def old_way(rounds: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {"rpcs": [], "bytes": [], "cpu_ms": [], "kids_ms": [],
                                       "ctld_ms": []}  # fmt: skip
    for _ in range(rounds):
        began, ctld = cpu(), slurmctld_cpu()
        out = subprocess.run(["squeue", "--json"], capture_output=True, check=True).stdout
        json.loads(out)
        ended = cpu()
        samples["cpu_ms"].append((ended[0] - began[0]) * 1000)
        samples["kids_ms"].append((ended[1] - began[1]) * 1000)
        samples["ctld_ms"].append((slurmctld_cpu() - ctld) * 1000)
        samples["rpcs"].append(1)
        samples["bytes"].append(len(out))
    return {k: statistics.median(v) for k, v in samples.items()}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ours", type=int, default=20)
    parser.add_argument("--foreign", default="0,1000,5000")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    ensure_other_user()
    work = Path(tempfile.mkdtemp(prefix="bench-slurm-rounds."))
    settings = make_settings(work, "mongodb://unused", "unused")
    backend = create_backend(parse_runner_config("slurm", {"backend": "slurm"}), settings)
    assert isinstance(backend, SlurmBackend)
    handles = []
    for _ in range(args.ours):
        job_id = new_id()
        (settings.jobs_dir / job_id).mkdir()
        plan = Plan(job_location(job_id), (Step(("sleep", "600")),))
        handles.append(await backend.submit(StepRun(job_id, plan)))
    rows = []
    try:
        for count in [int(c) for c in args.foreign.split(",")]:
            foreign(count)
            ours, old = await measure(backend, handles, args.rounds), old_way(args.rounds)
            rows.append((count, ours, old))
    finally:
        for handle in handles:
            subprocess.run(["scancel", handle.split(":")[0]], capture_output=True)
        subprocess.run(["scancel", f"--user={OTHER}"], capture_output=True)
    print(
        f"\none status round, {args.ours} jobs of the appliance followed, medians of "
        f"{args.rounds} rounds (old: one squeue --json of the whole cluster, parsed)\n"
    )
    print("| foreign jobs | SLURM commands (ours / old) | bytes answered (ours / old) | "
          "scheduler CPU, ms (ours / old) | its SLURM commands' CPU, ms (ours / old) | "
          "slurmctld CPU, ms (ours / old) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for count, ours, old in rows:
        print(f"| {count:,} | {ours['rpcs']:g} / {old['rpcs']:g} | {ours['bytes']:,.0f} / "
              f"{old['bytes']:,.0f} | {ours['cpu_ms']:.1f} / {old['cpu_ms']:.1f} | "
              f"{ours['kids_ms']:.1f} / {old['kids_ms']:.1f} | "
              f"{ours['ctld_ms']:.0f} / {old['ctld_ms']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
