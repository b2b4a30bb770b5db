"""Warnings before the volumes fill: the sentence, the gauges in /metrics, readiness and
``appliance check``. The volumes here are test folders on the machine's own disk, which
the test suite's images alone fill to well over 1 %: a warning at 1 % always shows."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from appliance.diskspace import Space, space_of, volumes, warnings
from appliance.settings import Settings
from appliance.web.app import create_app
from tests.helpers import make_settings
from tests.test_cli import run
from tests.web.conftest import AS_OPERATOR, ECHO, OPERATOR


def test_a_warning_names_the_volume_how_full_it_is_and_what_to_do() -> None:
    settings = Settings.from_mapping({"disk_warning_percent": 80, "min_free_disk": "1G"})
    full = Space("jobs", Path("/data/jobs"), size=100 * 1024**3, free=15 * 1024**3)
    roomy = Space("uploads", Path("/data/uploads"), size=100 * 1024**3, free=50 * 1024**3)
    [warning] = warnings(settings, [full, roomy])
    assert warning.startswith("the jobs volume (/data/jobs) is 85% full (15 GiB free of 100 GiB")
    assert "refused (507) below 1 GiB free" in warning and "appliance purge" in warning
    assert warnings(Settings.from_mapping({"disk_warning_percent": 86}), [full, roomy]) == []
    assert warnings(Settings.from_mapping({"disk_warning_percent": 0}), [full]) == []  # off
    assert Space("jobs", Path("/"), 0, 0).used_percent == 0.0


def test_the_space_of_a_real_folder_and_of_a_missing_one(tmp_path: Path) -> None:
    space = space_of("jobs", tmp_path)
    assert space is not None and 0 < space.free <= space.size
    info = os.statvfs(tmp_path)
    assert space.free == info.f_bavail * info.f_frsize
    assert space_of("jobs", tmp_path / "missing") is None


def _settings(tmp_path: Path, mongodb_uri: str, database_name: str, **changes: object) -> Settings:
    from appliance.tokens import token_hash

    settings = make_settings(tmp_path, mongodb_uri, database_name,
                             operator_token_sha256=token_hash(OPERATOR), **changes)  # fmt: skip
    (settings.runners_dir / "local.yaml").write_text("backend: local\n")
    (settings.services_dir / "echo.service.yaml").write_text(ECHO)
    return settings


def test_readiness_warns_and_the_gauges_show_both_volumes(
    tmp_path: Path, mongodb_uri: str, database_name: str
) -> None:
    settings = _settings(tmp_path, mongodb_uri, database_name, disk_warning_percent=1)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"  # a warning only
        said = [w for w in ready.json()["warnings"] if "volume" in w]
        assert len(said) == 2, ready.json()
        assert f"the uploads volume ({settings.uploads_dir}) is " in said[0]
        assert f"the jobs volume ({settings.jobs_dir}) is " in said[1]
        text = client.get("/metrics", headers=AS_OPERATOR).text
    gauges = {(s.name, s.labels.get("volume")): s.value
              for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip
    for volume in ("uploads", "jobs"):
        size = gauges[("appliance_volume_size_bytes", volume)]
        assert 0 < gauges[("appliance_volume_free_bytes", volume)] <= size
    assert gauges[("appliance_volume_warning_percent", None)] == 1.0
    quiet = _settings(tmp_path, mongodb_uri, database_name, disk_warning_percent=100)
    with TestClient(create_app(quiet), raise_server_exceptions=False) as client:
        assert not [w for w in client.get("/readyz").json().get("warnings", []) if "volume" in w]


def test_check_says_each_volumes_space_and_warns(tmp_path: Path, mongodb_uri: str) -> None:
    settings = _settings(tmp_path, mongodb_uri, "unused")
    [uploads, jobs] = volumes(settings)
    env = {"APPLIANCE_SERVICES_DIR": str(settings.services_dir),
           "APPLIANCE_RUNNERS_DIR": str(settings.runners_dir),
           "APPLIANCE_UPLOADS_DIR": str(settings.uploads_dir),
           "APPLIANCE_JOBS_DIR": str(settings.jobs_dir), "APPLIANCE_MONGODB_URI": mongodb_uri,
           "APPLIANCE_SCHEDULER_ADDRESS": f"ipc://{tmp_path}/nobody",
           "APPLIANCE_DISK_WARNING_PERCENT": "1"}  # fmt: skip
    result = run("check", env=env)
    assert f"uploads: {settings.uploads_dir}: " in result.stdout
    assert f"jobs: {settings.jobs_dir}: " in result.stdout and "% full)" in result.stdout
    assert f"warning: the jobs volume ({settings.jobs_dir}) is " in result.stderr
    assert "less than min_free_disk" not in result.stderr
    env["APPLIANCE_MIN_FREE_DISK"] = str(jobs.size + 1)  # more than the whole disk: refused
    result = run("check", env=env)
    assert result.returncode == 1
    assert "jobs: less than min_free_disk" in result.stderr and "refused (507)" in result.stderr
    assert uploads.size > 0
