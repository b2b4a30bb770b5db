"""An upgrade as a site makes it: the bundle of the first release (0.1.0, built from its
commit) holds an upload, finished jobs with files, a finished TES task, jobs running in
their containers and jobs waiting while its scheduler is down; then ``scripts/up`` of
this checkout runs over it. Nothing is lost: the stored records are migrated, finished
work is served as it was, waiting jobs run, running jobs are followed to their end (or
ended with the reason), and every job runs once."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.bundle.compose import ContainerCreates, free_port, remove_bundle, wait_status
from tests.conftest import ROOT
from tests.first_release import VERSION as OLD
from tests.first_release import first_release
from tests.helpers import TEST_IMAGE, build_test_image

PROJECT = "appliance-upgrade"
SLEEPER = f"""\
appliance-version: 1
name: Sleeper
description: Sleeps, then writes down that it ran.
image: {TEST_IMAGE}
runner: docker
resources: {{memory: 64M, time-limit: 5m}}
parameters:
  seconds: {{name: Seconds, type: integer, default: 0, min: 0, max: 120}}
command: sh -c 'sleep "$0"; echo run >> runs.txt'
args:
  seconds: {{arg: "$(value)"}}
outputs:
  runs: {{path: runs.txt, name: Runs, media-type: text/plain}}
"""
TES = "APPLIANCE_TES_ENABLED=true\nAPPLIANCE_TES_ANONYMOUS=true\nAPPLIANCE_TES_IMAGES=appliance-test/\n"


@dataclass
class Site:
    base: str
    env: dict[str, str]  # the new scripts/up's environment
    old: Path  # the first release's tree


def _run(command: list[str], env: dict[str, str], cwd: Path = ROOT) -> str:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"{command}: {done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("upgrade")
    build_test_image(folder)
    old = first_release(folder, images=False)  # its scripts/up builds them
    with (old / "compose" / "appliance.env").open("a") as old_settings:
        old_settings.write(TES)
    services = folder / "services" / "sleeper"
    services.mkdir(parents=True)
    (services / "sleeper.service.yaml").write_text(SLEEPER)
    settings = folder / "appliance.env"  # the site's settings, kept outside the checkout
    settings.write_text((ROOT / "compose" / "appliance.env").read_text() + TES)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")} | {
        "APPLIANCE_PROJECT": PROJECT, "APPLIANCE_PORT": str(port),
        "APPLIANCE_BUILD": "--airgapped", "APPLIANCE_SERVICES": str(folder / "services"),
    }  # fmt: skip
    try:
        _run([str(old / "scripts" / "up")], env, cwd=old)
        yield Site(f"http://127.0.0.1:{port}", env | {"APPLIANCE_ENV_FILE": str(settings)}, old)
    finally:
        remove_bundle(PROJECT, env)


def submit(base: str, seconds: int) -> str:
    answer = httpx.post(f"{base}/api/services/sleeper/jobs", data={"seconds": str(seconds)},
                        timeout=30)  # fmt: skip
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def runs(base: str, job_id: str) -> str:
    answer = httpx.get(f"{base}/media/jobs/{job_id}/runs.txt", timeout=30)
    assert answer.status_code == 200, (job_id, answer.status_code)
    return answer.text


def test_the_first_releases_bundle_upgraded_in_place_loses_nothing(site: Site) -> None:
    base = site.base
    assert httpx.get(f"{base}/api/version").json()["applianceVersion"] == OLD
    content = b">one\nMKVLA\n"
    upload = httpx.post(f"{base}/api/files", files={"file": ("one.fa", content)}, timeout=30)
    assert upload.status_code == 201, upload.text
    upload_url = upload.json()["@content"]
    finished = [submit(base, 0) for _ in range(2)]
    ended = {job_id: wait_status(base, job_id) for job_id in finished}
    assert {job["status"] for job in ended.values()} == {"COMPLETED"}
    task = httpx.post(f"{base}/ga4gh/tes/v1/tasks", json={"executors": [
        {"image": TEST_IMAGE, "command": ["sh", "-c", "echo hi"]}]}, timeout=30).json()["id"]  # fmt: skip
    deadline = time.monotonic() + 120
    while httpx.get(f"{base}/ga4gh/tes/v1/tasks/{task}").json()["state"] != "COMPLETE":
        assert time.monotonic() < deadline, "the TES task did not complete"
        time.sleep(0.3)
    running = [submit(base, 25) for _ in range(2)]
    for job_id in running:
        wait_status(base, job_id, ("RUNNING",))
    subprocess.run(["docker", "stop", f"{PROJECT}-scheduler-1"], check=True, capture_output=True)
    waiting = [submit(base, 1) for _ in range(3)]  # while its scheduler is down

    creates = ContainerCreates(PROJECT)
    _run([str(ROOT / "scripts" / "up")], site.env)
    assert httpx.get(f"{base}/api/version").json()["applianceVersion"] != OLD
    logs = "".join(subprocess.run(["docker", "logs", f"{PROJECT}-{name}-1"], capture_output=True,
                                  text=True).stderr for name in ("scheduler", "web"))  # fmt: skip
    assert "stored records: format 2, migrated from format 1" in logs  # by whichever came first

    served = httpx.get(base + upload_url, timeout=30)
    assert served.status_code == 200 and served.content == content
    for job_id, before in ended.items():
        after = wait_status(base, job_id)
        assert (after["status"], after["completionTime"]) == ("COMPLETED", before["completionTime"])
        assert runs(base, job_id) == "run\n"
    assert httpx.get(f"{base}/ga4gh/tes/v1/tasks/{task}").json()["state"] == "COMPLETE"
    for job_id in waiting:
        assert wait_status(base, job_id)["status"] == "COMPLETED", job_id
        assert runs(base, job_id) == "run\n"
    for job_id in running:  # followed to its end, or ended saying why: never run again
        job = wait_status(base, job_id, timeout=240)
        if job["status"] == "COMPLETED":
            assert runs(base, job_id) == "run\n"
        else:
            assert job["status"] == "ERROR" and job["error"], job
    started = creates.stop()
    for job_id in finished + running:
        assert job_id not in started, job_id  # its run was the first release's
    for job_id in waiting:
        assert started.count(job_id) == 1, job_id
