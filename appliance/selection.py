"""Choosing which of a service's runners takes a job."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from appliance.errors import ConfigError
from appliance.model import RunnerChoice, Service

Selector = Callable[[dict[str, Any]], str | None]


def load_selector(path: str, folder: Path | None = None) -> Selector:
    """A function named by a dotted path (``package.module.function``): a module in the
    service's ``folder`` first (the previous system's project folder was on the import
    path, and its files name ``scripts.selectors.example_selector``), then any module."""
    module_name, _, name = path.rpartition(".")
    try:
        module = _in_folder(folder, module_name) if folder else None
        function = getattr(module or importlib.import_module(module_name), name)
    except Exception as exc:  # the module is the site's code: whatever it raises
        raise ConfigError(
            f"cannot load selector {path!r}: {exc}", key="execution.selector"
        ) from None
    if not callable(function):
        raise ConfigError(f"selector {path!r} is not a function", key="execution.selector")
    selector: Selector = function
    return selector


def _in_folder(folder: Path, module_name: str) -> ModuleType | None:
    """The module ``a.b`` of ``folder/a/b.py``, loaded under a name of its own (two
    service folders may both have ``scripts/selectors.py``); None if there is no such file."""
    if not module_name:
        return None
    file = folder.joinpath(*module_name.split(".")).with_suffix(".py")
    if not file.is_file():
        return None
    unique = "appliance_selector_" + hashlib.sha256(bytes(file.resolve())).hexdigest()[:16]
    if unique in sys.modules:
        return sys.modules[unique]
    spec = importlib.util.spec_from_file_location(unique, file)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[unique] = module
    return module


def choose_runner(
    service: Service, values: dict[str, Any], selector: Selector | None
) -> RunnerChoice | None:
    """The service's ``default`` runner, or the one its selector names; None rejects the job."""
    if selector is None:
        return service.runners.get("default")
    name = selector(dict(values))
    return None if name is None else service.runners.get(name)
