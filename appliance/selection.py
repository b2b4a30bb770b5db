"""Choosing which of a service's runners takes a job."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from appliance.errors import ConfigError
from appliance.model import RunnerChoice, Service

Selector = Callable[[dict[str, Any]], str | None]


def load_selector(path: str) -> Selector:
    """A function named by a dotted path (``package.module.function``)."""
    module_name, _, name = path.rpartition(".")
    try:
        function = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(
            f"cannot load selector {path!r}: {exc}", key="execution.selector"
        ) from None
    if not callable(function):
        raise ConfigError(f"selector {path!r} is not a function", key="execution.selector")
    selector: Selector = function
    return selector


def choose_runner(
    service: Service, values: dict[str, Any], selector: Selector | None
) -> RunnerChoice | None:
    """The service's ``default`` runner, or the one its selector names; None rejects the job."""
    if selector is None:
        return service.runners.get("default")
    name = selector(dict(values))
    return None if name is None else service.runners.get(name)
