"""A site's own files beside its settings file (tests/bundle/site.py): copied in by
scripts/up, readable by the appliance's user alone, in the web and scheduler containers
only; a client added by scripts/tes-token is let in by scripts/up; a file named but
missing stops scripts/up before anything is touched."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx

from tests.bundle.compose import PROJECT, compose
from tests.bundle.site import SNAKEMAKE_IMAGE, TES_TOKEN, Site
from tests.conftest import ROOT


def up_env(bundle: str, site: Site) -> dict[str, str]:
    """scripts/up's environment as the bundle fixture gave it (tests/bundle/compose.py)."""
    given = {"APPLIANCE_PROJECT": PROJECT, "APPLIANCE_PORT": bundle.rsplit(":", 1)[1],
             "APPLIANCE_BUILD": "--airgapped", "APPLIANCE_WEBHOOK_PRIVATE": "true",
             "APPLIANCE_ENV_FILE": str(site.env_file), "APPLIANCE_TOOLS": "all"}  # fmt: skip
    return {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")} | given


def service_info(bundle: str, token: str) -> int:
    answer = httpx.get(f"{bundle}/ga4gh/tes/v1/service-info", timeout=30,
                       headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    return answer.status_code


def test_site_files_reach_the_web_and_scheduler_only_readable_by_the_appliance(
    bundle: str, site: Site
) -> None:
    for service in ("web", "scheduler"):
        shown = compose("exec", "-T", service, "stat", "-c", "%U %a", "/etc/appliance/site/s3-keys")
        assert shown.stdout.split() == ["appliance", "400"], shown.stderr
    proxy = compose("exec", "-T", "proxy", "ls", "/etc/appliance/site")
    assert proxy.returncode != 0
    assert service_info(bundle, TES_TOKEN) == 200


def test_a_client_made_by_tes_token_and_file_roots_are_taken_by_up(
    bundle: str, site: Site, tmp_path: Path
) -> None:
    """scripts/tes-token adds a client, a line of the settings adds a shared folder for
    file:// URLs; one scripts/up takes both, and a task copies a file there and back."""
    made = subprocess.run([str(ROOT / "scripts" / "tes-token"), "ada"], capture_output=True,
                          text=True, env=up_env(bundle, site))  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.rsplit(": ", 1)[1].strip()
    assert token not in (site.env_file.parent / "tes-clients").read_text()
    assert service_info(bundle, token) == 401  # not yet: the web process read the file at start
    shared = tmp_path / "shared"
    (shared / "snake").mkdir(parents=True)
    (shared / "snake" / "in.txt").write_text("from the shared folder\n")
    for path in (shared, shared / "snake", shared / "snake" / "in.txt"):
        os.chown(path, 1000, 1000)
    with site.env_file.open("a") as settings:
        settings.write(f"APPLIANCE_TES_FILE_ROOTS={shared}/{{client}}\n")
    again = subprocess.run([str(ROOT / "scripts" / "up")], capture_output=True, text=True,
                           env=up_env(bundle, site), timeout=1800)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert service_info(bundle, token) == 200
    assert service_info(bundle, TES_TOKEN) == 200
    task = {"inputs": [{"url": f"file://{shared}/snake/in.txt", "path": "/data/in.txt"}],
            "outputs": [{"url": f"file://{shared}/snake/out.txt", "path": "/data/out.txt"}],
            "executors": [{"image": SNAKEMAKE_IMAGE,
                           "command": ["cp", "/data/in.txt", "/data/out.txt"]}]}  # fmt: skip
    auth = {"Authorization": f"Bearer {TES_TOKEN}"}
    created = httpx.post(f"{bundle}/ga4gh/tes/v1/tasks", json=task, headers=auth, timeout=30)
    assert created.status_code == 200, created.text
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = httpx.get(f"{bundle}/ga4gh/tes/v1/tasks/{created.json()['id']}", headers=auth,
                          params={"view": "FULL"}, timeout=30).json()  # fmt: skip
        if state["state"] not in ("QUEUED", "INITIALIZING", "RUNNING"):
            break
        time.sleep(0.5)
    assert state["state"] == "COMPLETE", state
    assert (shared / "snake" / "out.txt").read_text() == "from the shared folder\n"


def test_a_named_site_file_that_is_missing_stops_up_at_once(tmp_path: Path) -> None:
    settings = tmp_path / "appliance.env"
    settings.write_text("APPLIANCE_TES_TOKENS_FILE=/etc/appliance/site/clients\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env |= {"APPLIANCE_ENV_FILE": str(settings), "APPLIANCE_PROJECT": "appliance-never-started"}
    up = subprocess.run([str(ROOT / "scripts" / "up")], capture_output=True, text=True, env=env,
                        timeout=60)  # fmt: skip
    assert up.returncode != 0
    assert f"put that file at {tmp_path}/clients" in up.stderr
    assert "building" not in up.stderr  # nothing was built or started
