"""Runner configurations: one YAML file per configured runner in the runners folder.

    # runners/docker.yaml (the runner's id is the file name)
    backend: docker          # a name from appliance.runners.BACKENDS
    description: Each job in its own container
    limits: {cpus: 1, memory: 1g, time-limit: 1h, pids: 256}
    options: {...}           # the backend's own settings

Each configuration is instantiated once when a scheduler starts, and shared by every
service that names it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.errors import ConfigError
from appliance.model import Resources
from appliance.runners import BACKENDS
from appliance.servicefile import parse_resources
from appliance.yamlfile import read_mapping

KEYS = {"backend", "description", "limits", "options"}


@dataclass(frozen=True)
class RunnerConfig:
    id: str
    backend: str
    source: str
    description: str = ""
    limits: Resources = field(default_factory=Resources)
    options: dict[str, Any] = field(default_factory=dict)


def parse_runner_config(runner_id: str, data: dict[str, Any], source: str = "") -> RunnerConfig:
    for key in data:
        if key not in KEYS:
            raise ConfigError(
                f"unknown key (known: {', '.join(sorted(KEYS))})", source=source, key=str(key)
            )
    backend = data.get("backend")
    if not isinstance(backend, str) or not backend:
        raise ConfigError("missing", source=source, key="backend")
    if backend not in BACKENDS:
        raise ConfigError(
            f"unknown backend {backend!r} (known: {', '.join(sorted(BACKENDS))})",
            source=source,
            key="backend",
        )
    options = data.get("options") or {}
    limits = data.get("limits") or {}
    if not isinstance(options, dict):
        raise ConfigError("expected a mapping", source=source, key="options")
    if not isinstance(limits, dict):
        raise ConfigError("expected a mapping", source=source, key="limits")
    try:
        resources = parse_resources(limits, "limits")
    except ConfigError as exc:
        raise exc.in_file(source) from None
    description = data.get("description") or ""
    return RunnerConfig(runner_id, backend, source, str(description), resources, dict(options))


def load_runner_configs(directory: Path) -> tuple[dict[str, RunnerConfig], list[ConfigError]]:
    """Every ``*.yaml`` in ``directory``: the good configurations, and an error for each bad one."""
    configs: dict[str, RunnerConfig] = {}
    errors: list[ConfigError] = []
    if not directory.is_dir():
        return configs, [ConfigError("runners folder not found", source=str(directory))]
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            config = parse_runner_config(path.stem, read_mapping(path), str(path))
        except ConfigError as exc:
            errors.append(exc)
            continue
        if config.id in configs:
            errors.append(ConfigError(f"runner {config.id!r} is defined twice", source=str(path)))
            continue
        configs[config.id] = config
    return configs, errors
