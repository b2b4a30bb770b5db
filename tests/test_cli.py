from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA, ROOT
from tests.helpers import TEST_IMAGE, build_test_image, slurm_available

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
    result = run("check", "--offline")
    assert result.returncode == 0, result.stderr
    assert "clustalo" in result.stdout and "OK" in result.stdout
    assert "database:" not in result.stdout  # offline: files only


def test_check_asks_the_database_and_each_engine(tmp_path: Path, mongodb_uri: str) -> None:
    slurm_available()
    build_test_image(tmp_path)
    services, runners = tmp_path / "services", tmp_path / "runners"
    services.mkdir()
    runners.mkdir()
    (runners / "docker.yaml").write_text("backend: docker\n")
    (runners / "pool.yaml").write_text(
        f"backend: local\noptions: {{address: 'ipc://{tmp_path}/none'}}\n"
    )
    (runners / "cluster.yaml").write_text("backend: slurm\n")
    for name, image in (("there", TEST_IMAGE), ("missing", "appliance-test/not-built:0")):
        (services / f"{name}.service.yaml").write_text(
            f"appliance-version: 1\nname: {name}\nimage: {image}\ncommand: 'true'\n"
        )
    env = {"APPLIANCE_SERVICES_DIR": str(services), "APPLIANCE_RUNNERS_DIR": str(runners),
           "APPLIANCE_MONGODB_URI": mongodb_uri,
           "APPLIANCE_SCHEDULER_ADDRESS": f"ipc://{tmp_path}/no-scheduler"}  # fmt: skip
    result = run("check", env=env)
    assert result.returncode == 1
    assert "database: mongodb://127.0.0.1:" in result.stdout and "answers" in result.stdout
    assert "runner docker: Docker engine " in result.stdout
    assert (
        "runner cluster: slurm-wlm 22.05" in result.stdout and "partitions: debug" in result.stdout
    )
    assert (
        f"{services / 'missing.service.yaml'}: image: appliance-test/not-built:0 is not in runner docker's engine"
        in result.stderr
    )
    assert "there.service.yaml" not in result.stderr
    assert f"{runners / 'pool.yaml'}: runner pool does not answer" in result.stderr
    assert f"wake-ups: nothing takes them at {env['APPLIANCE_SCHEDULER_ADDRESS']}" in result.stderr
    assert "3 problem(s) found" in result.stderr
    env["APPLIANCE_MONGODB_URI"] = "mongodb://someone:secret@127.0.0.1:9/"
    result = run("check", env=env)
    assert "database: mongodb://someone:***@127.0.0.1:9/ does not answer" in result.stderr
    assert "secret" not in result.stderr + result.stdout


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
    result = run("check", "--offline", env={"APPLIANCE_SETTINGS": str(settings)})
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
    assert "18 problem(s) found" in result.stderr


def test_check_warns_about_classifiers_jalview_would_not_know(tmp_path: Path) -> None:
    services = tmp_path / "services"
    services.mkdir()
    (services / "x.service.yaml").write_text(
        "appliance-version: 1\nname: X\nimage: x\ncommand: 'true'\n"
        "classifiers: ['Operation : Multiple sequence alignment']\n")  # fmt: skip
    result = run("check", "--offline", env={"APPLIANCE_SERVICES_DIR": str(services)})
    assert result.returncode == 0 and "OK" in result.stdout  # a warning, not an error
    assert (
        f"warning: {services / 'x.service.yaml'}: classifiers[0]: 'Operation : Multiple "
        "sequence alignment' is not an operation Jalview knows"
    ) in result.stderr


def test_check_reports_bad_settings(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("web_wokers: 2\n")
    result = run("check", "--offline", env={"APPLIANCE_SETTINGS": str(settings)})
    assert result.returncode == 2
    assert f"{settings}: web_wokers: unknown setting" in result.stderr
    # a value that would undo a safety net: pymongo reads 0 as "no time limit"
    result = run("check", "--offline", env={"APPLIANCE_DATABASE_TIMEOUT": "0"})
    assert result.returncode == 2
    assert "database_timeout: expected from 0.5 s to 600 s, got '0'" in result.stderr


def test_check_reports_bad_runner_files(tmp_path: Path) -> None:
    runners = tmp_path / "runners"
    runners.mkdir()
    (runners / "docker.yaml").write_text("backend: docker\n")
    (runners / "gpu.yaml").write_text("backend: quantum\n")
    (runners / "bad.yaml").write_text("backend: local\nlimits: {memory: lots}\n")
    (runners / "opts.yaml").write_text("backend: docker\noptions: {slots: many, colour: red}\n")
    result = run("check", "--offline", env={"APPLIANCE_RUNNERS_DIR": str(runners)})
    assert result.returncode == 1
    assert f"{runners / 'gpu.yaml'}: backend: unknown backend 'quantum'" in result.stderr
    assert f"{runners / 'bad.yaml'}: limits.memory:" in result.stderr
    assert f"{runners / 'opts.yaml'}: options.slots: expected a whole number" in result.stderr
    assert f"{runners / 'opts.yaml'}: options.colour: unknown option" in result.stderr


def test_the_scheduler_refuses_a_broken_runner_file(tmp_path: Path) -> None:
    runners = tmp_path / "runners"
    runners.mkdir()
    (runners / "docker.yaml").write_text("backend: docker\noptions: {slots: -2}\n")
    result = run("scheduler", env={"APPLIANCE_RUNNERS_DIR": str(runners)})
    assert result.returncode == 2
    assert f"{runners / 'docker.yaml'}: options.slots: must be at least 0" in result.stderr
    result = run(
        "scheduler", "--runner", "gpu", env={"APPLIANCE_RUNNERS_DIR": str(ROOT / "runners")}
    )
    assert result.returncode == 2 and "no runner 'gpu' is configured" in result.stderr


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
    assert plan["env"] == {"SLIVKA_HOME": "/srv/slivka"}  # the previous system gave it


def test_command_by_service_id(fasta: Path) -> None:
    result = run("command", "clustalo", "--file", f"input={fasta}", "--set", "iterations=2")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["runner"] == "docker"
    assert plan["argv"][0] == "clustalo" and "--iterations=2" in plan["argv"]
    assert "--outfmt=clustal" in plan["argv"]  # Clustal always: Jalview reads it by type


def test_command_with_invalid_values_exits_nonzero_with_error_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.fa"
    bad.write_text("not a fasta file")
    result = run("command", "clustalo", "--file", f"input={bad}", "--set", "iterations=1000",
                 "--set", "nope=1")  # fmt: skip
    assert result.returncode == 1
    errors = {e["parameter"]: e["errorCode"] for e in json.loads(result.stdout)["errors"]}
    assert errors == {"input": "media_type", "iterations": "max_value", "nope": "unexpected"}
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


MISTAKEN = f"""\
appliance-version: 1
name: Needle
image: {TEST_IMAGE}
command: needle -auto ${{NOT_SET_ANYWHERE}}
parameters:
  input: {{name: Input, type: file, media-type: application/x-emboss}}
  gapopen: {{name: Gap open, type: decimal, default: 10}}
  gapextend: {{name: Gap extend, type: decimal, default: 0.5}}
  unused: {{name: Not used, type: text, required: false}}
args:
  input: {{arg: "$(value)"}}
  gapopen: {{arg: "-gapopen ${{gapopen}}"}}
  gapextend: {{arg: "-gapextend $(valeu)"}}
  gapextnd: {{arg: "-x $(value)"}}
"""
# every mistake in MISTAKEN: (key, words of the message)
MISTAKES = [
    ("command", "${NOT_SET_ANYWHERE}: no environment variable NOT_SET_ANYWHERE is set"),
    ("args.gapopen.arg", "${gapopen}: no environment variable gapopen is set (a parameter's value is $(value))"),
    ("args.gapextend.arg", "$(valeu) is not a placeholder"),
    ("args.gapextnd", "names no parameter"),
    ("parameters.unused", "no entry in 'args' uses it"),
    ("parameters.input.media-type", "unknown media type 'application/x-emboss'"),
]  # fmt: skip


def test_check_names_every_mistake_that_would_show_only_when_a_job_runs(tmp_path: Path) -> None:
    services = tmp_path / "services"
    (services / "needle").mkdir(parents=True)
    source = services / "needle" / "needle.service.yaml"
    source.write_text(MISTAKEN)
    for image in ("Appliance/Needle:1", "needle :1", "'needle:1'"):
        (services / f"img{len(image)}.service.yaml").write_text(
            f"appliance-version: 1\nname: I\nimage: \"{image}\"\ncommand: 'true'\n")  # fmt: skip
    (services / "water.service.yml").write_text(MISTAKEN)  # never read: not .service.yaml
    result = run("check", "--offline", env={"APPLIANCE_SERVICES_DIR": str(services)})
    assert result.returncode == 1
    for key, words in MISTAKES:  # all of them, not only the first of the file
        assert f"{source}: {key}: {words}" in result.stderr, (key, result.stderr)
    assert result.stderr.count("is not a valid image reference") == 3
    assert f"{services / 'water.service.yml'}: not read" in result.stderr
    assert f"{len(MISTAKES) + 4} problem(s) found" in result.stderr
    assert "needle" in result.stdout  # the service still loads: a running site is not changed


def test_images_reads_each_folders_image_with_the_loader(tmp_path: Path) -> None:
    services = tmp_path / "services"
    for folder, image in (("a", "appliance/a:1"), ("b", '"appliance/b:2"')):
        (services / folder).mkdir(parents=True)
        (services / folder / "Dockerfile").write_text("FROM scratch\n")
        (services / folder / f"{folder}.service.yaml").write_text(
            f"appliance-version: 1\nname: A\nimage: {image}  # quoted is valid YAML\ncommand: 'true'\n")  # fmt: skip
    result = run("images", env={"APPLIANCE_SERVICES_DIR": str(services)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["a\tappliance/a:1", "b\tappliance/b:2"]
    (services / "c").mkdir()
    (services / "c" / "Dockerfile").write_text("FROM scratch\n")  # and no service names an image
    result = run("images", env={"APPLIANCE_SERVICES_DIR": str(services)})
    assert result.returncode == 1 and "c: a Dockerfile needs one image" in result.stderr


def test_a_previous_system_file_gets_its_folders_image_and_the_mapped_runners(
    tmp_path: Path,
) -> None:
    from tests.web.test_previous import PREVIOUS

    folder = tmp_path / "services" / "sort"
    folder.mkdir(parents=True)
    (folder / "sort.service.yaml").write_text(PREVIOUS)
    (folder / "Dockerfile").write_text("FROM scratch\n")
    env = {"APPLIANCE_SERVICES_DIR": str(tmp_path / "services"),
           "APPLIANCE_RUNNERS_DIR": str(ROOT / "runners")}  # fmt: skip
    unmapped = run("check", "--offline", env=env)  # its GridEngineRunner has no runner here
    assert unmapped.returncode == 1
    assert "execution.runners.cluster: runner 'gridengine' is not configured" in unmapped.stderr
    mapped = run("check", "--offline", env={**env, "APPLIANCE_PREVIOUS_RUNNERS": "*=docker"})
    assert mapped.returncode == 0, mapped.stderr
    images = run("images", env=env)
    assert images.stdout.splitlines() == ["sort\tappliance/sort:latest"]  # named by its folder
    (folder / "image").write_text("# the name to build\ngroup/sort:2.0\n")
    assert run("images", env=env).stdout.splitlines() == ["sort\tgroup/sort:2.0"]


def test_check_warns_of_the_previous_systems_idioms_and_passes(tmp_path: Path) -> None:
    """Its public files keep args entries that no parameter uses (MUSCLE's ``_clwstrict``,
    MAFFT's ``_clustalout``): a warning naming file and key, not a problem."""
    folder = tmp_path / "services" / "options"
    folder.mkdir(parents=True)
    source = folder / "options.service.yaml"
    shutil.copy(ROOT / "tests" / "data" / "previous" / "idioms" / "options.service.yaml", source)
    (folder / "Dockerfile").write_text("FROM scratch\n")  # its image: appliance/options
    env = {"APPLIANCE_SERVICES_DIR": str(tmp_path / "services"),
           "APPLIANCE_RUNNERS_DIR": str(ROOT / "runners"),
           "APPLIANCE_PREVIOUS_RUNNERS": "*=docker"}  # fmt: skip
    result = run("check", "--offline", env=env)
    assert result.returncode == 0, result.stderr
    assert f"warning: {source}: args._clwstrict: names no parameter" in result.stderr
    assert "problem(s) found" not in result.stderr and "OK" in result.stdout
