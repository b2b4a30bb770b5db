"""Runner backends. ``BACKENDS`` is the one place that lists them.

A backend module is imported only when a runner configuration names it, so the web
process (which never runs jobs) never imports ``docker`` or opens a Docker socket. Each
module has ``create(config, settings) -> Backend``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.runnerconf import RunnerConfig
    from appliance.runners.base import Backend
    from appliance.settings import Settings

BACKENDS: dict[str, str] = {
    "docker": "appliance.runners.docker",
    "local": "appliance.runners.local",
    "memory": "appliance.runners.memory",
}


def create_backend(config: RunnerConfig, settings: Settings) -> Backend:
    module = importlib.import_module(BACKENDS[config.backend])
    backend: Backend = module.create(config, settings)
    return backend
