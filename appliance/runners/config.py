"""Runner configurations: one YAML file per configured runner in the runners folder.

    # runners/docker.yaml (the runner's id is the file name)
    backend: docker          # a name from appliance.runners.registry.BACKENDS
    description: Each job in its own container
    limits: {cpus: 1, memory: 1g, time-limit: 1h, pids: 256}
    options: {...}           # the backend's own settings, checked against its declaration

Each configuration is checked when it is loaded (by the scheduler at start and by
``appliance check``): unknown keys and options, wrong types, numbers out of range and
limits the backend cannot enforce are errors that name the file and the key. A scheduler
instantiates each configuration once, at start, and shares it among every job.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.errors import ConfigError, ConfigErrors
from appliance.model import Resources
from appliance.runners.registry import (
    BACKENDS,
    LIMIT_KEYS,
    Abilities,
    abilities_of,
    check_options,
    restrictive,
)
from appliance.servicefile import parse_resources
from appliance.yamlfile import read_mapping

if TYPE_CHECKING:
    from appliance.runners.base import Backend
    from appliance.settings import Settings

KEYS = {"backend", "description", "limits", "options"}
_VARIABLE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?\}$")


def expand_variables(value: Any, environ: Mapping[str, str], key: str) -> Any:
    """An option value of the form ``${NAME}`` or ``${NAME:-default}`` comes from the
    environment (a value that comes out empty counts as not given: None)."""
    if isinstance(value, dict):
        expanded = {k: expand_variables(v, environ, f"{key}.{k}") for k, v in value.items()}
        return {k: v for k, v in expanded.items() if v is not None}
    if not isinstance(value, str) or not (match := _VARIABLE.match(value)):
        return value
    name, default = match.group(1), match.group(2)
    if name not in environ and default is None:
        raise ConfigError(f"environment variable {name} is not set (write ${{{name}:-}} to "
                          "make it optional)", key=key)  # fmt: skip
    text = environ.get(name) or default or ""
    return text or None


@dataclass(frozen=True)
class RunnerConfig:
    id: str
    backend: str
    source: str
    description: str = ""
    limits: Resources = field(default_factory=Resources)
    options: dict[str, Any] = field(default_factory=dict)  # checked, defaults filled in

    @property
    def abilities(self) -> Abilities:
        return abilities_of(self.backend, self.options)


def unenforced(resources: Resources, abilities: Abilities) -> list[str]:
    """The file keys of the limits in ``resources`` that a backend cannot enforce."""
    return [LIMIT_KEYS[name] for name in restrictive(resources) if name not in abilities.enforces
            and name != "time_limit"]  # fmt: skip


def _in_file(exc: ConfigError, source: str) -> ConfigError:
    if isinstance(exc, ConfigErrors):
        return ConfigErrors(e.in_file(source) for e in exc.errors)
    return exc.in_file(source)


def parse_runner_config(
    runner_id: str, data: dict[str, Any], source: str = "", environ: Mapping[str, str] | None = None
) -> RunnerConfig:
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
        options = expand_variables(options, os.environ if environ is None else environ, "options")
        checked = check_options(backend, options)
    except ConfigError as exc:
        raise _in_file(exc, source) from None
    config = RunnerConfig(runner_id, backend, source, str(data.get("description") or ""),
                          resources, checked)  # fmt: skip
    for key in unenforced(resources, config.abilities):
        raise ConfigError(f"the {backend} backend cannot enforce this limit", source=source,
                          key=f"limits.{key}")  # fmt: skip
    return config


def load_runner_configs(directory: Path) -> tuple[dict[str, RunnerConfig], list[ConfigError]]:
    """Every ``*.yaml`` in ``directory``: the good configurations, and an error for each bad one."""
    configs: dict[str, RunnerConfig] = {}
    errors: list[ConfigError] = []
    if not directory.is_dir():
        return configs, [ConfigError("runners folder not found", source=str(directory))]
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            config = parse_runner_config(path.stem, read_mapping(path), str(path))
        except ConfigErrors as exc:
            errors.extend(exc.errors)
            continue
        except ConfigError as exc:
            errors.append(exc)
            continue
        if config.id in configs:
            errors.append(ConfigError(f"runner {config.id!r} is defined twice", source=str(path)))
            continue
        configs[config.id] = config
    return configs, errors


def create_backend(config: RunnerConfig, settings: Settings) -> Backend:
    """The backend of ``config``, its module imported now (``create(config, settings)``)."""
    module = importlib.import_module(BACKENDS[config.backend].module)
    backend: Backend = module.create(config, settings)
    return backend
