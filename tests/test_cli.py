from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA, ROOT

FASTA = ">a\nMKVLA\n>b\nMKVA\n"


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        capture_output=True, text=True, env={**base, **(env or {})}, cwd=cwd, timeout=60,
    )  # fmt: skip


@pytest.fixture
def fasta(tmp_path: Path) -> Path:
    path = tmp_path / "seqs.fa"
    path.write_text(FASTA)
    return path


def test_check_passes_on_the_shipped_configuration() -> None:
    result = run("check")
    assert result.returncode == 0, result.stderr
    assert "clustalo" in result.stdout and "OK" in result.stdout


def test_check_reports_every_broken_file_with_file_and_key(tmp_path: Path) -> None:
    services = tmp_path / "services"
    services.mkdir()
    for path in (DATA / "services" / "broken").glob("*.yaml"):
        (services / path.name).write_text(path.read_text())
    (services / "good.service.yaml").write_text(
        (DATA / "services" / "valid" / "native-echo.service.yaml").read_text()
    )
    (services / "norunner.service.yaml").write_text(
        "appliance-version: 1\nname: N\nimage: x\ncommand: t\nrunner: gpu\n"
    )
    (services / "noimage.service.yaml").write_text("appliance-version: 1\nname: N\ncommand: t\n")
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"services_dir: services\nrunners_dir: {ROOT / 'runners'}\n")
    result = run("check", env={"APPLIANCE_SETTINGS": str(settings)})
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert (
        f"{services / 'bad-type.service.yaml'}: parameters.x.type: unknown type 'matrix'"
        in result.stderr
    )
    assert any(
        "norunner.service.yaml: runner: runner 'gpu' is not configured" in line for line in lines
    )
    assert any("noimage.service.yaml: image:" in line for line in lines)
    assert "services: 1 " in result.stdout  # the good one still loads
    assert "17 problem(s) found" in result.stderr


def test_check_reports_bad_settings(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("web_wokers: 2\n")
    result = run("check", env={"APPLIANCE_SETTINGS": str(settings)})
    assert result.returncode == 2
    assert f"{settings}: web_wokers: unknown setting" in result.stderr


def test_check_reports_bad_runner_files(tmp_path: Path) -> None:
    runners = tmp_path / "runners"
    runners.mkdir()
    (runners / "docker.yaml").write_text("backend: docker\n")
    (runners / "gpu.yaml").write_text("backend: quantum\n")
    (runners / "bad.yaml").write_text("backend: local\nlimits: {memory: lots}\n")
    result = run("check", env={"APPLIANCE_RUNNERS_DIR": str(runners)})
    assert result.returncode == 1
    assert f"{runners / 'gpu.yaml'}: backend: unknown backend 'quantum'" in result.stderr
    assert f"{runners / 'bad.yaml'}: limits.memory:" in result.stderr


def test_command_for_the_previous_systems_example(fasta: Path) -> None:
    path = DATA / "services" / "valid" / "clustalo-legacy.service.yaml"
    result = run("command", str(path), "--file", f"input={fasta}", "--set", "iterations=3",
                 "--set", "dealign=yes")  # fmt: skip
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["argv"] == [
        "clustalo", "--infile=input.fa", "--iter=3", "--dealign", "--outfile=alignment.aln",
    ]  # fmt: skip
    assert plan["files"] == [{"parameter": "input", "source": str(fasta), "path": "input.fa"}]
    assert plan["env"] == {}


def test_command_by_service_id(fasta: Path) -> None:
    result = run("command", "clustalo", "--file", f"input={fasta}", "--set", "outfmt=FASTA")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["runner"] == "docker"
    assert plan["argv"][0] == "clustalo" and "--outfmt=fasta" in plan["argv"]


def test_command_with_invalid_values_exits_nonzero_with_error_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.fa"
    bad.write_text("not a fasta file")
    result = run("command", "clustalo", "--file", f"input={bad}", "--set", "iterations=1000",
                 "--set", "nope=1")  # fmt: skip
    assert result.returncode == 1
    errors = {e["parameter"]: e["errorCode"] for e in json.loads(result.stdout)["errors"]}
    assert errors == {"input": "media_type", "iterations": "max_value", "nope": "invalid"}
    result = run("command", "clustalo")
    assert json.loads(result.stdout)["errors"][0]["errorCode"] == "required"


def test_command_injection_attempts_stay_literal(tmp_path: Path) -> None:
    service = tmp_path / "t.service.yaml"
    service.write_text(
        "appliance-version: 1\nname: T\nimage: x\ncommand: tool\n"
        "parameters: {q: {name: Q, type: text}}\nargs: {q: {arg: '--q=${value}'}}\n"
    )
    hostile = "; rm -rf / $(id) ${HOME} `id`\nnext"
    result = run("command", str(service), "--set", f"q={hostile}")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["argv"] == ["tool", f"--q={hostile}"]


def test_command_errors_for_unknown_service_and_bad_options(fasta: Path) -> None:
    result = run("command", "nosuch")
    assert result.returncode == 2 and "no service 'nosuch'" in result.stderr
    result = run("command", "clustalo", "--set", "novalue")
    assert result.returncode == 2 and "NAME=VALUE" in result.stderr
    result = run("command", "clustalo", "--file", f"input={fasta}", "--runner", "gpu")
    assert result.returncode == 2 and "no runner 'gpu'" in result.stderr
    result = run("command", str(DATA / "services" / "broken" / "bad-type.service.yaml"))
    assert result.returncode == 2 and "parameters.x.type" in result.stderr
