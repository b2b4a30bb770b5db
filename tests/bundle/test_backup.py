"""Backup and restore of a bundle, as docs/operations.md says: a backup taken while
submissions keep arriving, everything destroyed, the backup restored. Every job the
backup recorded is back, finished ones with byte-identical files; none runs twice (no
container is made after the restore for a job that had started before it)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.bundle.compose import (
    PROTEINS,
    ContainerCreates,
    free_port,
    remove_bundle,
    wait_status,
)
from tests.conftest import ROOT

PROJECT = "appliance-backup"


def _env(port: int) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")} | {
        "APPLIANCE_PROJECT": PROJECT, "APPLIANCE_PORT": str(port),
        "APPLIANCE_BUILD": "--airgapped",
    }  # fmt: skip


def _script(name: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(ROOT / "scripts" / name), *args], env=env, capture_output=True,
                          text=True, timeout=1800)  # fmt: skip
    assert done.returncode == 0, f"scripts/{name}: {done.stderr[-3000:]}"
    return done


def _destroy(env: dict[str, str]) -> None:
    remove_bundle(PROJECT, env)
    volumes = subprocess.run(["docker", "volume", "ls", "-q"], capture_output=True,
                             text=True).stdout.split()  # fmt: skip
    assert not [v for v in volumes if v.startswith(f"{PROJECT}-")], volumes


@pytest.fixture(scope="module")
def env() -> Iterator[dict[str, str]]:
    env = _env(free_port())
    try:
        _script("up", env=env)
        yield env
    finally:
        _destroy(env)


def submit(base: str) -> str:
    answer = httpx.post(f"{base}/api/services/clustalo/jobs", data={"iterations": "1"},
                        files={"input": ("p.fa", PROTEINS.read_bytes())}, timeout=30)  # fmt: skip
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def files_of(base: str, job_id: str) -> dict[str, str]:
    """Each of a job's files and the SHA-256 of what the proxy serves (each must be)."""
    listing = httpx.get(f"{base}/api/jobs/{job_id}/files", timeout=30).json()["files"]
    found = {}
    for file in listing:
        answer = httpx.get(base + file["@content"], timeout=30)
        assert answer.status_code == 200, (job_id, file["path"], answer.status_code)
        found[file["path"]] = hashlib.sha256(answer.content).hexdigest()
    return found


def test_a_backup_under_load_restores_every_job_with_its_files_and_runs_none_twice(
    env: dict[str, str], tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{env['APPLIANCE_PORT']}"
    finished = [submit(base) for _ in range(6)]
    before: dict[str, dict[str, Any]] = {}
    for job_id in finished:
        job = wait_status(base, job_id)
        assert job["status"] == "COMPLETED"
        before[job_id] = {"job": job, "files": files_of(base, job_id)}

    submitted: list[str] = []
    stop = threading.Event()

    def load() -> None:  # submissions keep coming while the backup is taken
        while not stop.is_set():
            submitted.append(submit(base))
            time.sleep(0.05)

    loader = threading.Thread(target=load)
    loader.start()
    try:
        while len(submitted) < 10:
            time.sleep(0.1)
        sent_before = list(submitted)
        folder = tmp_path / "backup"
        made = _script("backup", str(folder), env=env)
        assert f"backup of {PROJECT} in {folder}" in made.stderr
    finally:
        stop.set()
        loader.join(60)
    assert len(submitted) > len(sent_before)  # the bundle kept accepting meanwhile
    assert sorted(p.name for p in folder.iterdir()) == [
        "SHA256SUMS", "database.jsonl.gz", "jobs.tar.gz", "uploads.tar.gz"]  # fmt: skip
    with gzip.open(folder / "database.jsonl.gz", "rt") as dump:
        header = json.loads(dump.readline())
        stored = {line["d"]["_id"]: line["d"]["state"]
                  for line in map(json.loads, dump) if line["c"] == "jobs"}  # fmt: skip
    assert header["format"] == 2 and header["appliance"]
    assert set(finished) | set(sent_before) <= set(stored)  # recorded before it began: in it

    _destroy(env)
    creates = ContainerCreates(PROJECT)
    _script("restore", str(folder), env=env)
    for job_id, was in before.items():
        job = httpx.get(f"{base}/api/jobs/{job_id}", timeout=30).json()
        assert (
            job["status"] == "COMPLETED" and job["completionTime"] == was["job"]["completionTime"]
        )
        assert files_of(base, job_id) == was["files"], job_id  # byte-identical
    for job_id, state in stored.items():
        assert httpx.get(f"{base}/api/jobs/{job_id}", timeout=30).status_code == 200, job_id
        ended = wait_status(base, job_id)  # every restored job ends: none is stuck
        if state == "COMPLETED":  # finished when the database was read: its files are here
            assert ended["status"] == "COMPLETED" and files_of(base, job_id), job_id
    ran_again = creates.stop()
    for job_id, state in stored.items():
        # Waiting then (ACCEPTED; or QUEUED for one of the docker runner's slots, its
        # waiting mark in the saved job folder): it never ran in what was saved, so it
        # runs here, once. Anything that had started: never again.
        allowed = 1 if state in ("ACCEPTED", "QUEUED") else 0
        assert ran_again.count(job_id) <= allowed, (job_id, state)
