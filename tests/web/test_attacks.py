"""What a job, or one client, can do to the appliance and to everyone else: attacks tried
as an attacker would, through the real proxy, web process, scheduler and Docker engine.

A job here is a tool taken over by its input: the ``planter`` service runs whatever shell
script it is given, in the same locked-down container as any tool."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import TEST_IMAGE
from tests.web.stack import FASTA, Stack, running_stack

PLANTER = f"""\
appliance-version: 1
name: Planter
description: Runs a shell script, as a tool that its input took over would.
image: {TEST_IMAGE}
runner: docker
resources: {{memory: 64M, time-limit: 5m}}
parameters:
  script: {{name: Script, type: text}}
command: sh -c
args:
  script: {{arg: "$(value)"}}
outputs:
  anything: {{path: "*", name: Anything, media-type: text/plain}}
"""
# Every name the appliance writes or reads in (or, before, beside) a job's directory.
APPLIANCE_NAMES = ["stdout", "stderr", ".exit.json", ".exit.json.tmp", ".exit-1.json",
                   ".waiting.json", ".waiting.json.tmp", ".records", ".slurm-0.log"]  # fmt: skip
FINAL = {"COMPLETED", "FAILED", "ERROR", "INTERRUPTED", "DELETED", "REJECTED"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str,
          database_name: str) -> Iterator[Stack]:  # fmt: skip
    root = tmp_path_factory.mktemp("attacks")
    runners = {"docker": "backend: docker\noptions: {stop_grace: 1, slots: 4}\n"}
    with running_stack(root, mongodb_uri, database_name, services={"planter": PLANTER},
                       runners=runners) as stack:  # fmt: skip
        yield stack


def submit(stack: Stack, service: str, **data: str) -> str:
    files = {}
    if service == "upper" and "input" not in data:
        files = {"input": ("in.fa", FASTA.encode(), "application/fasta")}
    response = httpx.post(f"{stack.proxy}/api/services/{service}/jobs", data=data, files=files)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def wait(stack: Stack, job_id: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while (state := httpx.get(f"{stack.proxy}/api/jobs/{job_id}").json()["status"]) not in FINAL:
        assert time.monotonic() < deadline, f"job {job_id} still {state}"
        time.sleep(0.1)
    return str(state)


def test_a_job_cannot_make_the_appliance_write_through_or_block_on_what_it_left(
    stack: Stack,
) -> None:
    """Symlinks to another user's upload and to another job's output, and FIFOs, under
    every name the appliance uses: the victims stay byte-identical, and other jobs keep
    starting and ending on time."""
    upload = httpx.post(f"{stack.proxy}/api/files",
                        files={"file": ("v.fa", b">v\nVICTIM\n", "application/fasta")}).json()  # fmt: skip
    victim_job = submit(stack, "upper")
    assert wait(stack, victim_job) == "COMPLETED"
    victims = [stack.settings.uploads_dir / upload["id"],
               stack.settings.jobs_dir / victim_job / "result.txt"]  # fmt: skip
    before = {path: path.read_bytes() for path in victims}
    targets = [f"../{victim_job}/result.txt", str(victims[0]), str(victims[1])]
    scripts = [
        "; ".join(f"ln -sf {target} /job/{name}" for name in APPLIANCE_NAMES) for target in targets
    ] + ["; ".join(f"mkfifo /job/{name}" for name in APPLIANCE_NAMES)]
    # ... and left while the job still runs, for the appliance's writes at its end
    scripts += [f"sleep 1; {script}" for script in scripts]
    planters = [submit(stack, "planter", script=script) for script in scripts]
    began = time.monotonic()
    others = [submit(stack, "upper") for _ in range(4)]
    for job_id in others:
        assert wait(stack, job_id, timeout=30) == "COMPLETED"
    others_took = time.monotonic() - began
    ends = {job_id: wait(stack, job_id, timeout=30) for job_id in planters}
    assert {path: path.read_bytes() for path in victims} == before
    assert others_took < 20, others_took  # a blocked status round would stall them all
    assert set(ends.values()) <= {"COMPLETED", "FAILED", "ERROR"}, ends
    # The planters' own kept output is theirs: regular files, not the victims'
    for job_id in planters:
        stdout = stack.settings.jobs_dir / job_id / "stdout"
        assert not stdout.is_symlink() and stdout.is_file(), job_id
        listed = httpx.get(f"{stack.proxy}/api/jobs/{job_id}/files").json()["files"]
        for entry in listed:
            body = httpx.get(stack.proxy + entry["@content"])
            assert b"VICTIM" not in body.content and FASTA.upper().encode() not in body.content


def test_a_link_in_the_job_directory_is_never_an_output(stack: Stack, tmp_path: Path) -> None:
    """Links to files and folders elsewhere are not listed as outputs, not served, and
    cannot be passed to a later job as its input."""
    secret = stack.settings.uploads_dir.parent / "secret.txt"
    secret.write_text("SECRET\n")
    script = (f"ln -s {secret} /job/a.txt; mkdir /job/d; ln -s {secret.parent} /job/d/e; "
              f"ln -s {secret.parent} /job/up; echo fine > /job/ok.txt")  # fmt: skip
    job_id = submit(stack, "planter", script=script)
    assert wait(stack, job_id) == "COMPLETED"
    listed = {
        f["path"] for f in httpx.get(f"{stack.proxy}/api/jobs/{job_id}/files").json()["files"]
    }
    assert "ok.txt" in listed and not listed & {"a.txt", "d/e", "up", "up/secret.txt"}
    for path in ("a.txt", "up/secret.txt", "d/e/secret.txt"):
        served = httpx.get(f"{stack.proxy}/media/jobs/{job_id}/{path}")
        assert served.status_code in (403, 404) and b"SECRET" not in served.content, path
    reused = httpx.post(f"{stack.proxy}/api/services/upper/jobs", data={"input": f"{job_id}/a.txt"})
    assert reused.status_code == 422, reused.text
