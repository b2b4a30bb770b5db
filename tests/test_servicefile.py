from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from appliance.catalogue import map_previous_runners
from appliance.errors import ConfigError
from appliance.model import ParamType
from appliance.servicecheck import service_mistakes
from appliance.servicefolder import load_service_file, load_services
from tests.conftest import DATA, ROOT

VALID = DATA / "services" / "valid"
BROKEN = DATA / "services" / "broken"

# For each broken file: the key the error must name, and words of the reason.
EXPECTED_ERRORS = {
    "bad-type": ("parameters.x.type", "unknown type 'matrix'"),
    "bad-default": ("parameters.x.default", "at most 5"),
    "bad-example": ("parameters.x.example", "the example is not valid: must be at most 5"),
    "missing-command": ("command", "missing"),
    "bad-condition": ("parameters.x.condition", "ends too early"),
    "unknown-condition-name": ("parameters.x.condition", "unknown parameters: y"),
    "escaping-symlink": ("args.f.symlink", "inside the job directory"),
    "escaping-output": ("outputs.o.path", "inside the job directory"),
    "unknown-key": ("comand", "unknown key"),
    "bad-yaml": ("", "not valid YAML"),
    "no-version": ("", "appliance-version"),
    "bad-resources": ("resources.memory", "size"),
    "unterminated-env": ("command", "unterminated"),
    "array-symlink-without-index": ("args.f.symlink", "%d"),
    "choice-without-choices": ("parameters.c.choices", "needs choices"),
    "const-for-nothing": ("execution.runners.default.consts.nothing", "no argument"),
}


def test_every_broken_file_is_covered() -> None:
    names = {p.name.removesuffix(".service.yaml") for p in BROKEN.glob("*.service.yaml")}
    assert names == set(EXPECTED_ERRORS)


@pytest.mark.parametrize("name", sorted(EXPECTED_ERRORS))
def test_broken_file_reports_file_key_and_reason(name: str) -> None:
    key, words = EXPECTED_ERRORS[name]
    path = BROKEN / f"{name}.service.yaml"
    with pytest.raises(ConfigError) as info:
        load_service_file(path)
    error = info.value
    assert error.source == str(path)
    assert error.key == key
    assert words in error.reason
    assert str(path) in error.describe()


def test_broken_files_do_not_stop_the_good_ones(tmp_path: Path) -> None:
    for folder in (VALID, BROKEN):
        for path in folder.glob("*.service.yaml"):
            shutil.copy(path, tmp_path / path.name)
    services, errors = load_services(tmp_path)
    assert set(services) == {"clustalo-legacy", "everything-legacy", "native-echo"}
    assert len(errors) == len(EXPECTED_ERRORS)


def test_shipped_services_load_cleanly() -> None:
    services, errors = load_services(ROOT / "services")
    assert errors == []
    assert {"clustalo", "mafft", "muscle"} <= set(services)
    for service in services.values():
        assert service.format == "native"
        assert service.image
        assert service.resources.memory is not None
        # the web form's example button: the four globins of examples/proteins.fa
        assert (
            service.parameters["input"].example == (ROOT / "examples" / "proteins.fa").read_text()
        )


def test_legacy_example_model() -> None:
    service = load_service_file(VALID / "clustalo-legacy.service.yaml")
    assert service.id == "clustalo-legacy"
    assert service.format == "slivka"
    assert service.parameters["iterations"].type is ParamType.INTEGER
    assert service.parameters["iterations"].default == 1
    assert service.parameters["iterations"].required is False
    assert service.parameters["input"].required is True
    assert service.runners["default"].runner == "local"
    assert [a.id for a in service.arguments] == ["input", "iterations", "dealign", "outfile"]
    assert service.argument("outfile") is not None
    assert service.argument("outfile").default == "present"  # type: ignore[union-attr]


def test_every_legacy_feature_is_read() -> None:
    service = load_service_file(VALID / "everything-legacy.service.yaml")
    p = service.parameters
    assert p["ratio"].type is ParamType.DECIMAL and p["ratio"].min_exclusive
    assert p["ratio"].required is False
    assert p["label"].min_length == 2 and p["label"].max_length == 8
    assert p["verbose"].type is ParamType.FLAG and p["verbose"].default is False
    assert p["mode"].choices == {"Fast": "--fast", "Slow": "--slow"}
    assert p["seqs"].array and p["seqs"].type is ParamType.FILE
    assert p["seqs"].extensions == ("fa", "fasta")
    assert p["limit"].condition is not None
    assert p["limit"].condition.names == {"verbose", "self", "count"}
    assert service.runners["cluster"].runner == "slurm"
    assert service.runners["cluster"].consts == {"count": "7"}
    assert service.runners["default"].env == {"EXTRA": "1"}
    assert service.env == {"TOOL_HOME": "${HOME}/tool", "GREETING": "hello"}
    assert service.tests[0].interval == 600.0
    assert service.tests[0].applicable_runners == ("default",)
    assert service.outputs[0].path == "*.out"
    assert service.classifiers == ("Topic : Testing",)


def test_native_form_adds_image_resources_and_runner() -> None:
    service = load_service_file(VALID / "native-echo.service.yaml")
    assert service.image == "busybox:local"
    assert service.resources.cpus == 0.5
    assert service.resources.memory == 64 * 1024**2
    assert service.resources.time_limit == 30.0
    assert service.resources.pids == 16
    assert service.resources.network is False
    assert service.resources.user == "1000:1000"
    assert service.runners["default"].runner == "docker"
    assert service.parameters["message"].default == "hello"


def test_native_form_defaults_to_the_docker_runner(tmp_path: Path) -> None:
    path = tmp_path / "t.service.yaml"
    path.write_text('appliance-version: 1\nname: T\nimage: x\ncommand: "true"\n')
    service = load_service_file(path)
    assert service.runners["default"].runner == "docker"
    assert service.parameters == {}


def test_duplicate_ids_in_subfolders(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        shutil.copy(VALID / "native-echo.service.yaml", tmp_path / folder / "echo.service.yaml")
    services, errors = load_services(tmp_path)
    assert list(services) == ["echo"]
    assert len(errors) == 1 and "already defined" in errors[0].reason


def test_missing_services_folder(tmp_path: Path) -> None:
    services, errors = load_services(tmp_path / "nope")
    assert services == {}
    assert "not found" in errors[0].reason


PREVIOUS_TWO_RUNNERS = """\
slivka-version: 0.8.3
name: Sort
parameters:
  input: {name: Text, type: file}
command: sort
args:
  input: {arg: "$(value)"}
outputs:
  out: {path: stdout, name: Out}
execution:
  runners:
    default: {type: SlivkaQueueRunner}
    cluster: {type: SlurmRunner}
"""


@pytest.mark.parametrize(("dockerfile", "setting", "expected"), [
    (False, {"*": "docker"}, {"default": "docker", "cluster": "docker"}),
    (False, {"SlurmRunner": "slurm", "*": "local"}, {"default": "local", "cluster": "slurm"}),
    (True, {"Dockerfile": "docker", "*": "local"}, {"default": "docker", "cluster": "docker"}),
    (False, {"Dockerfile": "docker", "*": "local"}, {"default": "local", "cluster": "local"}),
    (True, {"SlurmRunner": "slurm"}, {"default": "local", "cluster": "slurm"}),
])  # fmt: skip
def test_previous_runner_classes_are_mapped_by_the_setting(
    tmp_path: Path, dockerfile: bool, setting: dict[str, str], expected: dict[str, str]
) -> None:
    """``Dockerfile=R`` sends a file beside a Dockerfile (it has an image) to R whatever
    its classes; otherwise its class's runner, else ``*``'s, else the built-in one."""
    (tmp_path / "sort").mkdir()
    path = tmp_path / "sort" / "sort.service.yaml"
    path.write_text(PREVIOUS_TWO_RUNNERS)
    if dockerfile:
        (tmp_path / "sort" / "Dockerfile").write_text("FROM scratch\n")
    service = map_previous_runners(load_service_file(path), setting)
    assert {rid: c.runner for rid, c in service.runners.items()} == expected


def test_a_configmaps_hidden_copy_is_not_read_twice(tmp_path: Path) -> None:
    """A Kubernetes ConfigMap volume holds each file in a hidden ``..<time>`` folder and a
    link to it beside; hidden folders (and ``.git``) are not service folders."""
    shipped = ROOT / "services" / "kalign" / "kalign.service.yaml"
    hidden = tmp_path / "..2026_12_07_17_00_00.123456789"
    hidden.mkdir()
    (hidden / "kalign.service.yaml").write_text(shipped.read_text())
    (tmp_path / "..data").symlink_to(hidden.name)
    (tmp_path / "kalign.service.yaml").symlink_to("..data/kalign.service.yaml")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "old.service.yaml").write_text("not: a service")
    services, errors = load_services(tmp_path)
    assert errors == [] and set(services) == {"kalign"}


def test_shipped_services_have_no_mistake_a_check_would_find() -> None:
    """What `appliance check` (and so scripts/up) would stop at, for every shipped file:
    Jalview's annotation media types among what it knows."""
    services, errors = load_services(ROOT / "services")
    assert errors == []
    for service in services.values():
        assert service_mistakes(service, {}) == [], service.id
    assert {o.media_type for o in services["jronn"].outputs} >= {"application/jalview-annotations"}
