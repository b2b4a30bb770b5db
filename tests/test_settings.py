from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.settings import Settings, load_settings


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_work_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    assert settings.mongodb_uri == "mongodb://127.0.0.1:27017"
    assert settings.jobs_dir == tmp_path / "var" / "jobs"
    assert settings.upload_max_bytes == 100 * 1024**2
    assert settings.source == "(defaults)"


def test_file_values_and_relative_paths_from_the_file_folder(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    path = write(
        conf / "settings.yaml",
        "mongodb_uri: mongodb://db:27017\nuploads_dir: data/up\nupload_max_bytes: 5M\n"
        "uploads_url: /files/up/\nlease_seconds: 2m\n",
    )
    settings = load_settings({"APPLIANCE_SETTINGS": str(path)})
    assert settings.mongodb_uri == "mongodb://db:27017"
    assert settings.uploads_dir == conf / "data" / "up"
    assert settings.jobs_dir == conf / "var" / "jobs"  # defaults are from the file's folder too
    assert settings.upload_max_bytes == 5 * 1024**2
    assert settings.uploads_url == "/files/up"
    assert settings.lease_seconds == 120.0
    assert settings.source == str(path)


def test_environment_overrides_every_key(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", "mongodb_database: fromfile\nweb_workers: 2\n")
    settings = load_settings(
        {
            "APPLIANCE_SETTINGS": str(path),
            "APPLIANCE_MONGODB_DATABASE": "fromenv",
            "APPLIANCE_WEB_WORKERS": "4",
            "APPLIANCE_JOBS_DIR": "/srv/jobs",
        }
    )
    assert settings.mongodb_database == "fromenv"
    assert settings.web_workers == 4
    assert settings.jobs_dir == Path("/srv/jobs")
    defaults = Settings()
    for key in Settings.names():  # every key has its APPLIANCE_<KEY> variable, and it counts
        text, value = _sample(key)
        env = {f"APPLIANCE_{key.upper()}": text}
        if key in PAIRED:  # set together or not at all
            env[f"APPLIANCE_{PAIRED[key].upper()}"] = "/tmp/other"
        changed = load_settings(env)
        assert getattr(changed, key) == value != getattr(defaults, key), key


PAIRED = {"tls_certificate": "tls_key", "tls_key": "tls_certificate"}


def _sample(key: str) -> tuple[str, object]:
    """A value for ``key`` that is not its default, as text and as the setting holds it."""
    default = next(f for f in dataclasses.fields(Settings) if f.name == key).default
    if key.endswith("_url") and key != "public_url":
        return "/x", "/x"
    if isinstance(default, Path) or (default is None and key.endswith(("_file", "_keys")))\
            or key in PAIRED:  # fmt: skip
        return "/tmp/x", Path("/tmp/x")
    if key == "tes_s3_endpoint":
        return "https://s3.example.org/", "https://s3.example.org"
    if key == "tes_s3_roots":
        return "bucket-a, bucket-b/{client}", ("bucket-a", "bucket-b/{client}")
    if key == "smtp_security":
        return "TLS", "tls"
    if key == "public_url":
        return "https://appliance.example.org/", "https://appliance.example.org"
    if key == "trusted_proxies":
        return "10.1.0.0/16, 2001:db8::1", ("10.1.0.0/16", "2001:db8::1/128")
    if isinstance(default, tuple):
        return "/a, /b", ("/a", "/b")
    if key == "log_level":
        return "debug", "DEBUG"
    if key == "scheduler_metrics_bind":
        return "127.0.0.1:9101", "127.0.0.1:9101"
    if key == "log_format":
        return "JSON", "json"
    if key == "access_log":
        return "off", "off"
    if key == "operator_token_sha256":
        return "A" * 64, "a" * 64
    if isinstance(default, bool):
        return str(not default).lower(), not default
    if key.endswith("_retention") or key == "webhook_retry_for":
        return "2d", 2 * 86400.0
    if key.endswith("_bytes"):
        return "7M", 7 * 1024**2
    if isinstance(default, int | float):
        return "7", type(default)(7)
    return f"{default}-x", f"{default}-x"


def test_unknown_key_in_file_names_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", "mongodb_url: mongodb://x\n")
    with pytest.raises(ConfigError) as info:
        load_settings({"APPLIANCE_SETTINGS": str(path)})
    message = str(info.value)
    assert str(path) in message
    assert "mongodb_url" in message
    assert "mongodb_uri" in message  # the hint


def test_unknown_environment_variable_is_an_error() -> None:
    with pytest.raises(ConfigError, match="APPLIANCE_JOB_DIR"):
        load_settings({"APPLIANCE_JOB_DIR": "/x"})


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("web_workers: 0\n", "web_workers"),
        ("database_timeout: 0\n", "database_timeout"),  # pymongo: no time limit at all
        ("lease_seconds: 0\n", "lease_seconds"),
        ("sweep_seconds: 0\n", "sweep_seconds"),
        ("lease_seconds: 10d\n", "lease_seconds"),
        ("job_retention: 10s\n", "job_retention"),  # deleted while still being read
        ("upload_max_files: 0\n", "upload_max_files"),
        ("worker_slots: 100000\n", "worker_slots"),
        ("operator_token_sha256: not-a-hash\n", "operator_token_sha256"),
        ("web_workers: many\n", "web_workers"),
        ("upload_max_bytes: lots\n", "upload_max_bytes"),
        ("uploads_url: media\n", "uploads_url"),
        ("log_level: LOUD\n", "log_level"),
        ("lease_seconds: -3\n", "lease_seconds"),
        ("trusted_proxies: [the-ingress]\n", "trusted_proxies"),  # nginx wants addresses
    ],
)
def test_invalid_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path / "s.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_settings({"APPLIANCE_SETTINGS": str(path)})
    assert info.value.key == key
    assert str(path) in str(info.value)


def test_malformed_yaml_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", "a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings({"APPLIANCE_SETTINGS": str(path)})
    with pytest.raises(ConfigError, match="file not found"):
        load_settings({"APPLIANCE_SETTINGS": str(tmp_path / "missing.yaml")})
    with pytest.raises(ConfigError, match="mapping"):
        load_settings({"APPLIANCE_SETTINGS": str(write(tmp_path / "l.yaml", "- 1\n"))})


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.mongodb_uri = "x"  # type: ignore[misc]


def test_importing_the_package_reads_no_settings(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = write(tmp_path / "s.yaml", "not_a_key: 1\n")
    code = "import appliance.cli, appliance.store, appliance.settings, appliance.forms"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"APPLIANCE_SETTINGS": str(bad), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_every_key_is_documented() -> None:
    from tests.conftest import ROOT

    text = (ROOT / "docs" / "settings.md").read_text()
    for key in Settings.names():
        assert f"| `{key}` | `APPLIANCE_{key.upper()}` |" in text, key
