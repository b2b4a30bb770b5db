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
    "pymongo": {"store"},
    "bson": {"store"},
    "httpx": {"tes/fetch.py", "tes/s3.py", "client.py"},  # TES inputs (http, S3); the user commands
    "lightkube": {"runners/kubernetes"},
    "httpx2": {"runners/kubernetes"},  # lightkube's HTTP client, for its errors
    "yaml": {"yamlfile.py"},
    "docker": set(),  # docker-py: the runner speaks the engine API itself (engine.py)
    "zmq": {"messaging.py"},
    "smtplib": {"mailsend.py"},  # e-mail when jobs end
    "starlette": {"web", "pages"},
    "jinja2": {"pages/render.py"},
    "prometheus_client": {"metrics.py"},
    "hypercorn": {"web"},
}
# package area -> areas it must never import
FORBIDDEN = {
    "web": {"appliance.scheduler", "appliance.runners", "appliance.worker"},
    "pages": {"appliance.scheduler", "appliance.runners", "appliance.worker"},
    "scheduler": {"appliance.web"},
    "runners": {"appliance.web", "appliance.scheduler"},
    "store": {"appliance.web", "appliance.scheduler", "appliance.runners"},
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
    assert "pymongo" in imports_of(PACKAGE / "store" / "connection.py")
    assert not owned_by("forms.py", OWNERS["pymongo"])
    assert owned_by("store/claims.py", OWNERS["pymongo"])


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the appliance modules it imports (type-checking imports included)."""
    modules = {module_name(path): path for path in MODULES}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found = [f"{node.module}.{a.name}" for a in node.names]
                found = [f for f in found if f in modules] or [node.module]
            elif isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            else:
                continue
            targets.update(f for f in found if f in modules and f != name)
        graph[name] = targets
    return graph


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert "appliance.store.connection" in graph["appliance.store.jobs"]
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*trail[trail.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []
