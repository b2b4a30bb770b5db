"""The layers the style guide asks for, enforced: each third-party library behind one module,
and the web layer apart from the scheduler, runners and Docker."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "appliance"

# library -> the only modules (relative to appliance/) that may import it
OWNERS = {
    "pymongo": {"store.py"},
    "yaml": {"yamlfile.py"},
    "docker": {"runners/docker.py"},
    "zmq": {"messaging.py"},
    "starlette": {"web"},
    "hypercorn": {"web"},
}
# package area -> areas it must never import
FORBIDDEN = {
    "web": {"appliance.scheduler", "appliance.runners", "appliance.worker"},
    "scheduler": {"appliance.web"},
    "runners": {"appliance.web", "appliance.scheduler"},
}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


MODULES = sorted(PACKAGE.rglob("*.py"))


def owned_by(relative: str, owners: set[str]) -> bool:
    return any(relative == o or relative.startswith(o.rstrip("/") + "/") for o in owners)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_third_party_libraries_stay_behind_one_module(path: Path) -> None:
    relative = str(path.relative_to(PACKAGE))
    for name in imports_of(path):
        library = name.split(".")[0]
        if library in OWNERS:
            assert owned_by(relative, OWNERS[library]), f"{relative} imports {library}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layers_do_not_cross(path: Path) -> None:
    relative = path.relative_to(PACKAGE)
    area = relative.parts[0].removesuffix(".py")
    for name in imports_of(path):
        for forbidden in FORBIDDEN.get(area, ()):
            assert not name.startswith(forbidden), f"{relative} imports {name}"


def test_the_checker_sees_imports() -> None:
    assert "pymongo" in imports_of(PACKAGE / "store.py")
    assert not owned_by("forms.py", OWNERS["pymongo"])
