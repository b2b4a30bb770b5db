"""What the TES API holds while the web app runs: its clients and its task checker."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from appliance.catalogue import Catalogue
from appliance.errors import ConfigError
from appliance.settings import Settings
from appliance.tes.auth import Clients, load_clients
from appliance.tes.task import TaskChecker

log = logging.getLogger(__name__)


@dataclass
class TesState:
    clients: Clients
    checker: TaskChecker


def tes_state(settings: Settings, catalogue: Catalogue) -> TesState | None:
    """None when the API is off (or misconfigured: the reason is logged, and the API then
    answers 404)."""
    if not settings.tes_enabled:
        return None
    try:
        clients = Clients(load_clients(settings.tes_tokens_file), settings.tes_anonymous)
    except ConfigError as exc:
        log.error("the Task Execution API stays off: %s", exc.describe())
        return None
    limits = {runner_id: config.limits for runner_id, config in catalogue.runners.items()}
    image_runners = {r for r, c in catalogue.runners.items() if c.abilities.needs_image}
    if settings.tes_runner not in image_runners:
        log.error("tes_runner %r is not a configured runner that runs images (%s)",
                  settings.tes_runner, ", ".join(sorted(image_runners)) or "none")  # fmt: skip
    return TesState(clients, TaskChecker(settings, limits, image_runners))
