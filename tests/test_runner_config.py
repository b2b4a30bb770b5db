from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.runners.config import load_runner_configs, parse_runner_config
from appliance.runners.registry import check_options
from tests.conftest import ROOT


def test_shipped_runner_configurations() -> None:
    configs, errors = load_runner_configs(ROOT / "runners")
    assert errors == []
    assert configs["docker"].backend == "docker"
    assert configs["docker"].limits.network is False
    assert configs["docker"].limits.memory == 1024**3
    assert configs["docker"].limits.user == "1000:1000"
    assert configs["docker"].options["slots"] == 8
    assert configs["docker"].options["stop_grace"] == 10.0  # a default, filled in
    assert configs["local"].backend == "local"
    # Nothing in the local runner's file is an option that nothing reads.
    assert configs["local"].options == check_options("local", {})


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        ({}, "backend", "missing"),
        ({"backend": "nope"}, "backend", "unknown backend"),
        ({"backend": "docker", "extra": 1}, "extra", "unknown key"),
        ({"backend": "docker", "options": [1]}, "options", "mapping"),
        ({"backend": "docker", "limits": {"cpus": -1}}, "limits.cpus", "positive"),
        ({"backend": "docker", "limits": {"gpus": 1}}, "limits.gpus", "unknown key"),
        ({"backend": "docker", "options": {"slot": 2}}, "options.slot", "unknown option"),
        ({"backend": "docker", "options": {"slots": "8"}}, "options.slots", "whole number"),
        ({"backend": "docker", "options": {"slots": 2.5}}, "options.slots", "whole number"),
        ({"backend": "docker", "options": {"slots": -1}}, "options.slots", "at least 0"),
        ({"backend": "docker", "options": {"stop_grace": True}}, "options.stop_grace", "number"),
        (
            {"backend": "docker", "options": {"host_paths": {"jobz": "/x"}}},
            "options.host_paths.jobz",
            "unknown volume",
        ),
        (
            {"backend": "docker", "options": {"host_paths": {"jobs": "rel"}}},
            "options.host_paths.jobs",
            "absolute",
        ),
        ({"backend": "local", "options": {"slots": 2}}, "options.slots", "unknown option"),
        ({"backend": "local", "options": {"timeout": 0}}, "options.timeout", "at least 0.1"),
        ({"backend": "local", "limits": {"memory": "1g"}}, "limits.memory", "cannot enforce"),
        ({"backend": "local", "limits": {"network": False}}, "limits.network", "cannot enforce"),
        (
            {"backend": "memory", "options": {"runs_steps": "yes"}},
            "options.runs_steps",
            "true or false",
        ),
        (
            {"backend": "docker", "options": {"base_url": "${NO_SUCH_VARIABLE_HERE}"}},
            "options.base_url",
            "NO_SUCH_VARIABLE_HERE is not set",
        ),
    ],
)
def test_bad_runner_configurations(data: dict[str, object], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_runner_config("r", data, "r.yaml")
    assert info.value.key == key
    assert words in info.value.reason
    assert info.value.source == "r.yaml"


def test_a_bad_file_does_not_hide_the_others(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("backend: local\n")
    (tmp_path / "b.yaml").write_text("backend: [\n")
    configs, errors = load_runner_configs(tmp_path)
    assert list(configs) == ["a"]
    assert len(errors) == 1 and "not valid YAML" in errors[0].reason


def test_every_problem_of_a_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "d.yaml").write_text("backend: docker\noptions: {slotz: 1, stop_grace: x}\n")
    _, errors = load_runner_configs(tmp_path)
    assert {(e.source, e.key) for e in errors} == {
        (str(tmp_path / "d.yaml"), "options.slotz"), (str(tmp_path / "d.yaml"), "options.stop_grace")}  # fmt: skip


def test_options_may_come_from_the_environment() -> None:
    data = {"backend": "docker", "options": {"host_paths": {"jobs": "${JOBS_AT}",
            "uploads": "${UPLOADS_AT:-}"}, "base_url": "${ENGINE:-unix:///e.sock}"}}  # fmt: skip
    config = parse_runner_config("d", data, "d.yaml", environ={"JOBS_AT": "/srv/jobs"})
    assert config.options["host_paths"] == {"jobs": "/srv/jobs"}  # empty counts as unset
    assert config.options["base_url"] == "unix:///e.sock"


def test_validating_options_reads_only_the_registry() -> None:
    """The web process and `appliance check --offline` never import a backend."""
    import subprocess
    import sys

    code = ("import sys; from appliance.runners.config import load_runner_configs; "
            "from pathlib import Path; load_runner_configs(Path('runners')); "
            "print(sorted(m for m in sys.modules if m.startswith(('docker', 'appliance.runners.'))))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout  # fmt: skip
    assert "docker'" not in out and "appliance.runners.docker" not in out
    assert "appliance.runners.registry" in out


def test_a_service_asking_for_limits_its_runner_cannot_enforce_is_refused(tmp_path: Path) -> None:
    from appliance.catalogue import load_catalogue
    from appliance.settings import Settings

    (tmp_path / "runners").mkdir()
    (tmp_path / "services").mkdir()
    (tmp_path / "runners" / "local.yaml").write_text("backend: local\n")
    (tmp_path / "runners" / "docker.yaml").write_text("backend: docker\n")
    service = ("appliance-version: 1\nname: S\nimage: x\nrunner: {runner}\ncommand: 'true'\n"
               "resources: {{memory: 1g, network: {network}, time-limit: 1h}}\n")  # fmt: skip
    for runner in ("local", "docker"):
        for network in ("false", "true"):
            (tmp_path / "services" / f"{runner}-{network}.service.yaml").write_text(
                service.format(runner=runner, network=network))  # fmt: skip
    settings = Settings.from_mapping({"services_dir": "services", "runners_dir": "runners"},
                                     base_dir=tmp_path)  # fmt: skip
    catalogue = load_catalogue(settings)
    problems = sorted((Path(e.source).name, e.key) for e in catalogue.errors)
    assert problems == [
        ("local-false.service.yaml", "resources.memory"),
        ("local-false.service.yaml", "resources.network"),
        ("local-true.service.yaml", "resources.memory"),  # network: true asks for nothing
    ]
    assert sorted(catalogue.services) == ["docker-false", "docker-true"]
    assert all("cannot enforce" in e.reason for e in catalogue.errors)


def test_the_slurm_backends_mode_decides_what_it_can_do() -> None:
    plain = parse_runner_config("s", {"backend": "slurm"})
    docker = parse_runner_config("s", {"backend": "slurm", "options": {"mode": "docker",
                                 "sbatch_options": ["--nice=10", "--constraint=a&b"]}})  # fmt: skip
    assert not plain.abilities.needs_image and docker.abilities.needs_image
    assert "network" not in plain.abilities.enforces and "network" in docker.abilities.enforces
    assert parse_runner_config("s", {"backend": "slurm", "options": {"mode": "docker"},
                                     "limits": {"network": False}}).limits.network is False  # fmt: skip
    shipped = load_runner_configs(ROOT / "runners" / "examples")[0]["slurm"]
    assert shipped.options["mode"] == "none" and shipped.options["partition"] == "batch"
