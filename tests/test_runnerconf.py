from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.runnerconf import load_runner_configs, parse_runner_config
from tests.conftest import ROOT


def test_shipped_runner_configurations() -> None:
    configs, errors = load_runner_configs(ROOT / "runners")
    assert errors == []
    assert configs["docker"].backend == "docker"
    assert configs["docker"].limits.network is False
    assert configs["docker"].limits.memory == 1024**3
    assert configs["docker"].limits.user == "1000:1000"
    assert configs["local"].backend == "local"
    assert configs["local"].options == {"slots": 2}


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        ({}, "backend", "missing"),
        ({"backend": "nope"}, "backend", "unknown backend"),
        ({"backend": "docker", "extra": 1}, "extra", "unknown key"),
        ({"backend": "docker", "options": [1]}, "options", "mapping"),
        ({"backend": "docker", "limits": {"cpus": -1}}, "limits.cpus", "positive"),
        ({"backend": "docker", "limits": {"gpus": 1}}, "limits.gpus", "unknown key"),
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
