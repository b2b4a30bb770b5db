"""The compose bundle for tests: built air-gapped and started with ``scripts/up``, stopped
with ``scripts/down --volumes`` (the ``bundle`` fixture of this package's conftest)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ROOT

PROJECT = "appliance-test"
PROTEINS = ROOT / "examples" / "proteins.fa"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_fasta(text: str) -> dict[str, str]:
    sequences: dict[str, str] = {}
    name = ""
    for line in text.splitlines():
        if line.startswith(">"):
            name = line[1:].split()[0]
            sequences[name] = ""
        elif line.strip():
            sequences[name] += line.strip()
    return sequences


def read_clustal(text: str) -> dict[str, str]:
    lines = text.splitlines()
    assert lines[0].startswith("CLUSTAL"), lines[0]
    rows: dict[str, str] = {}
    for line in lines[1:]:
        if not line.strip() or line.startswith(" "):
            continue  # blank lines and the conservation line
        name, residues = line.split()[:2]
        rows[name] = rows.get(name, "") + residues
    return rows


INPUT = read_fasta(PROTEINS.read_text())


def assert_alignment_of_the_input(rows: dict[str, str]) -> None:
    assert set(rows) == set(INPUT)
    assert len({len(r) for r in rows.values()}) == 1  # every row as long as the others
    for name, row in rows.items():
        assert row.replace("-", "") == INPUT[name]


def compose(*args: str, project: str = PROJECT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "compose", "-p", project, "-f", str(ROOT / "compose" / "compose.yaml"),
         "--env-file", str(ROOT / "compose" / ".state" / f"{project}.env"), *args],
        capture_output=True, text=True,
    )  # fmt: skip


def start_bundle(
    project: str = PROJECT, services: Path | None = None, **settings: str
) -> Iterator[str]:
    """``scripts/up`` as a group runs it (the shipped services, or the folder ``services``;
    ``settings`` for its environment, e.g. APPLIANCE_WORKER_SLOTS), then ``scripts/down
    --volumes``: the proxy's base URL meanwhile."""
    port = free_port()
    given = {"APPLIANCE_PROJECT": project, "APPLIANCE_PORT": str(port),
             "APPLIANCE_BUILD": "--airgapped", **settings}  # fmt: skip
    if services is not None:
        given["APPLIANCE_SERVICES"] = str(services)
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")} | given
    up = subprocess.run(
        [str(ROOT / "scripts" / "up")], env=env, capture_output=True, text=True, timeout=1800
    )
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        first = next(line for line in up.stdout.splitlines() if "http://" in line)
        assert f"Open http://localhost:{port}/ in a browser" in first  # the pages come first
        assert f"http://localhost:{port}/api/" in up.stdout
        assert f"scripts/example clustalo http://localhost:{port}" in up.stdout
        yield f"http://127.0.0.1:{port}"
    finally:
        down = subprocess.run([str(ROOT / "scripts" / "down"), "--volumes"], env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert down.returncode == 0, down.stderr
        volumes = subprocess.run(
            ["docker", "volume", "ls", "-q"], capture_output=True, text=True
        ).stdout
        assert f"{project}-jobs" not in volumes


FINAL = ("COMPLETED", "FAILED", "ERROR", "INTERRUPTED", "DELETED")


def wait_status(base: str, job_id: str, states: tuple[str, ...] = FINAL,
                timeout: float = 300) -> dict[str, Any]:  # fmt: skip
    """A job's view through the API once its status is one of ``states``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = httpx.get(f"{base}/api/jobs/{job_id}", timeout=30).json()
        if job["status"] in states:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} never reached {states}")


class ContainerCreates:
    """The job of each container the bundle's scheduler makes from now until ``stop``: the
    engine's event stream, read as it comes. (``docker events --since`` replays only the
    engine's last 256 events: an upgrade or a restore makes more, and the creates that
    matter were lost once in CI.)"""

    def __init__(self, project: str) -> None:
        self.stream = subprocess.Popen(
            ["docker", "events", "--filter", "type=container", "--filter", "event=create",
             "--filter", f"label=appliance.instance={project}",
             "--format", "{{json .Actor.Attributes}}"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(0.5)  # subscribed before anything it must see

    def stop(self) -> list[str]:
        time.sleep(1.0)  # the last events on their way
        self.stream.terminate()
        out, _ = self.stream.communicate(timeout=30)
        return [str(json.loads(line).get("appliance.job")) for line in out.splitlines()
                if line.strip()]  # fmt: skip


def remove_bundle(project: str, env: dict[str, str]) -> None:
    """Everything of a bundle gone, as on a new machine: its containers, its jobs'
    containers (they would keep the volumes in use), its volumes."""
    down = [str(ROOT / "scripts" / "down"), "--volumes"]
    subprocess.run(down, env=env, capture_output=True, timeout=300)
    jobs = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=appliance.instance={project}"],
                          capture_output=True, text=True).stdout.split()  # fmt: skip
    if jobs:
        subprocess.run(["docker", "rm", "-f", *jobs], capture_output=True)
    subprocess.run(down, env=env, capture_output=True, timeout=300)
