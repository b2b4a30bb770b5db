"""The user commands (`appliance submit`, `watch`, `cancel`, `jobs`) against a real stack:
nginx, the web process, the scheduler and the Docker engine; only the public API is used."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.web.stack import FASTA, UPPER, Stack, running_stack

TOKEN = "operator-secret-token"
FAILS = """\
appliance-version: 1
name: Fails
image: appliance-test/busybox:local
runner: docker
resources: {time-limit: 5m}
command: sh -c 'echo broken >&2; exit 3'
"""


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str, database_name: str
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("usercli")
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    services = {"fails": FAILS, "upper-again": UPPER + "reuse: true\n"}
    with running_stack(root, mongodb_uri, f"{database_name}_usercli", services=services,
                       operator_token_sha256=digest) as stack:  # fmt: skip
        yield stack


def appliance(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in stack.env.items() if not k.startswith("APPLIANCE_")}
    env["APPLIANCE_API_URL"] = stack.proxy
    return subprocess.run([sys.executable, "-m", "appliance", *args], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_submit_waits_downloads_and_exits_with_the_jobs_end(stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "seqs.fa"
    source.write_text(FASTA)
    out = tmp_path / "out"
    done = appliance(
        stack, "submit", "upper", f"--file=input={source}", "--set=tag=x", f"--download={out}"
    )
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.splitlines()[0]
    assert (out / "result.txt").read_text() == FASTA.upper()
    assert str(out / "result.txt") in done.stdout
    assert f"job {job_id}: COMPLETED" in done.stderr  # the progress line
    watched = appliance(stack, "watch", job_id)
    assert watched.returncode == 0 and f"job {job_id}: COMPLETED" in watched.stderr


def test_a_failed_job_exits_1_with_its_reason(stack: Stack) -> None:
    done = appliance(stack, "submit", "fails", "--wait")
    assert done.returncode == 1, done.stderr
    assert "FAILED (exit code 3)" in done.stderr and "stderr| broken" in done.stderr, done.stderr


def test_cancel_ends_a_running_job_interrupted(stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "seqs.fa"
    source.write_text(FASTA)
    job_id = appliance(
        stack, "submit", "upper", f"--file=input={source}", "--set=delay=60"
    ).stdout.strip()
    cancelled = appliance(stack, "cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    watched = appliance(stack, "watch", job_id, "--timeout=60")
    assert watched.returncode == 3, watched.stderr
    assert f"job {job_id}: INTERRUPTED" in watched.stderr


def test_refusals_are_exit_4_with_the_servers_message(stack: Stack, tmp_path: Path) -> None:
    no_input = appliance(stack, "submit", "upper")
    assert no_input.returncode == 4 and "input" in no_input.stderr, no_input.stderr
    unknown = appliance(stack, "submit", "nosuchservice")
    assert unknown.returncode == 4 and "404" in unknown.stderr, unknown.stderr
    missing = appliance(stack, "submit", "upper", f"--file=input={tmp_path / 'absent.fa'}")
    assert missing.returncode == 4 and "no such file" in missing.stderr
    nowhere = appliance(stack, "watch", "abc", "--url=http://127.0.0.1:9")
    assert nowhere.returncode == 4 and "cannot reach" in nowhere.stderr
    assert "Traceback" not in no_input.stderr + unknown.stderr + nowhere.stderr
    source = tmp_path / "seqs.fa"
    source.write_text(FASTA)
    hooked = appliance(stack, "submit", "upper", f"--file=input={source}",
                       "--webhook=https://hooks.example.org/x")  # fmt: skip
    assert hooked.returncode == 4 and "sends no webhooks" in hooked.stderr, hooked.stderr
    mailed = appliance(
        stack, "submit", "upper", f"--file=input={source}", "--email=ada@example.org"
    )
    assert mailed.returncode == 4 and "sends no e-mail" in mailed.stderr, mailed.stderr


def test_jobs_lists_with_the_operators_token_only(stack: Stack) -> None:
    refused = appliance(stack, "jobs")
    assert refused.returncode == 4 and "401" in refused.stderr, refused.stderr
    listed = appliance(stack, "jobs", f"--token={TOKEN}", "--service=upper")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() and all(" upper " in line for line in listed.stdout.splitlines())


def test_services_and_describe_say_what_to_submit(stack: Stack) -> None:
    listed = appliance(stack, "services")
    assert listed.returncode == 0, listed.stderr
    assert any(line.split()[0] == "upper" for line in listed.stdout.splitlines())
    described = appliance(stack, "describe", "upper")
    assert described.returncode == 0, described.stderr
    assert "upper: Upper case" in described.stdout
    assert "  delay  integer, optional [0, 60], default 0" in described.stdout
    assert "  input  file, required" in described.stdout
    as_json = json.loads(appliance(stack, "describe", "upper", "--json").stdout)
    assert {p["id"] for p in as_json["parameters"]} == {"input", "tag", "delay"}
    assert {s["id"] for s in json.loads(appliance(stack, "services", "--json").stdout)} >= {
        "upper", "fails"}  # fmt: skip
    missing = appliance(stack, "describe", "nosuch")
    assert missing.returncode == 4 and "404" in missing.stderr


def test_json_for_scripts_and_cancel_of_an_ended_job(stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "seqs.fa"
    source.write_text(FASTA)
    done = appliance(stack, "submit", "upper", f"--file=input={source}", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)  # the whole of stdout is one JSON document
    assert job["status"] == "COMPLETED" and job["finished"] is True
    ended = appliance(stack, "cancel", job["id"])
    assert ended.returncode == 5, ended.stderr  # its own code: nothing was cancelled
    assert f"job {job['id']} had already ended: COMPLETED" in ended.stderr
    said = json.loads(appliance(stack, "cancel", job["id"], "--json").stdout)
    assert said == {"id": job["id"], "cancelled": False, "status": "COMPLETED"}
    queued = json.loads(appliance(stack, "submit", "upper", f"--file=input={source}",
                                  "--set=delay=60", "--json").stdout)  # fmt: skip
    assert queued["status"] in ("ACCEPTED", "QUEUED", "RUNNING")
    cancelled = json.loads(appliance(stack, "cancel", queued["id"], "--json").stdout)
    assert cancelled["cancelled"] is True


def test_the_address_tried_is_named_when_none_was_given(stack: Stack) -> None:
    env = {k: v for k, v in stack.env.items() if not k.startswith("APPLIANCE_")}
    env["APPLIANCE_API_URL"] = "http://127.0.0.1:9"  # nothing answers there
    done = subprocess.run([sys.executable, "-m", "appliance", "services"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 4
    assert "cannot reach the appliance at http://127.0.0.1:9 (the api_url setting" in done.stderr


def containers_of(job_id: str, since: str) -> list[str]:
    """What the Docker engine did for the job's containers since ``since`` (its events)."""
    events = subprocess.run(
        ["docker", "events", "--since", since, "--until", str(int(time.time()) + 1),
         "--filter", f"label=appliance.job={job_id}", "--format", "{{.Action}}"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return events.stdout.split()


def test_an_identical_job_is_answered_from_the_first_with_no_container(
    stack: Stack, tmp_path: Path
) -> None:
    since = str(int(time.time()) - 1)
    source = tmp_path / "seqs.fa"
    source.write_text(FASTA)
    runs = [json.loads(appliance(stack, "submit", "upper-again", f"--file=input={source}",
                                 "--wait", "--json", *more).stdout)
            for more in ([], [], ["--no-reuse"])]  # fmt: skip
    first, second, refused = runs
    assert [job["status"] for job in runs] == ["COMPLETED"] * 3
    assert "reusedFrom" not in first and second["reusedFrom"] == first["id"]
    assert "reusedFrom" not in refused
    assert "create" in containers_of(first["id"], since)
    assert containers_of(second["id"], since) == []  # no container at all
    assert "create" in containers_of(refused["id"], since)
    out = tmp_path / "out"
    got = appliance(stack, "watch", second["id"], f"--download={out}")
    assert got.returncode == 0 and (out / "result.txt").read_text() == FASTA.upper()
    # answered at submission: the first look after the POST finds it done, and its file
    # comes at once (from the first job's directory until a scheduler has copied it)
    at_once = json.loads(appliance(stack, "submit", "upper-again", f"--file=input={source}",
                                   "--json").stdout)  # fmt: skip
    assert at_once["status"] == "COMPLETED" and at_once["reusedFrom"] == first["id"]
    fetched = appliance(stack, "watch", at_once["id"], f"--download={tmp_path / 'now'}")
    assert fetched.returncode == 0
    assert (tmp_path / "now" / "result.txt").read_text() == FASTA.upper()
    assert containers_of(at_once["id"], since) == []
