"""The bundle's tests share one running bundle: started for the first of them, stopped
(``scripts/down --volumes``) after the last."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bundle.compose import start_bundle
from tests.bundle.previous import PROJECT as PREVIOUS_PROJECT
from tests.bundle.previous import make_previous_services
from tests.bundle.site import Site, make_site


@pytest.fixture(scope="package")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """The bundle's settings file and the files beside it (tests/bundle/site.py): TES on,
    with S3 (the test S3 server) and the Snakemake image."""
    return make_site(tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="package")
def bundle(site: Site) -> Iterator[str]:
    """The compose bundle, running: its proxy's base URL. APPLIANCE_TEST_BUNDLE_URL names
    one already running instead (for work on these tests; CI always starts its own)."""
    running = os.environ.get("APPLIANCE_TEST_BUNDLE_URL")
    if running:
        yield running.rstrip("/")
        return
    # webhooks to the test's receiver on this host (a private address) are allowed
    # every shipped tool (scripts/up serves three by default: APPLIANCE_TOOLS)
    yield from start_bundle(APPLIANCE_WEBHOOK_PRIVATE="true", APPLIANCE_ENV_FILE=str(site.env_file),
                            APPLIANCE_TOOLS="all")  # fmt: skip


@pytest.fixture(scope="package")
def previous_services(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_previous_services(tmp_path_factory)


@pytest.fixture(scope="package")
def previous_bundle(previous_services: Path) -> Iterator[str]:
    """A bundle of the previous system's files (tests/bundle/previous.py), its worker pool
    turned on by APPLIANCE_WORKER_SLOTS alone: its proxy's base URL."""
    yield from start_bundle(PREVIOUS_PROJECT, previous_services, APPLIANCE_WORKER_SLOTS="2")


# -- the parity tests (test_parity.py): marks for deliberate differences, both columns --

PARITY: dict[str, dict[str, str]] = {}  # test id without its system -> system -> outcome


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        differences = getattr(item.module, "DIFFERENCES", None)  # type: ignore[attr-defined]
        callspec = getattr(item, "callspec", None)
        if differences is None or callspec is None:
            continue
        system = callspec.params.get("system")
        why = differences.get((item.originalname, system))  # type: ignore[attr-defined]
        if why:
            label = "deliberate" if system == "appliance" else "the previous system"
            item.add_marker(pytest.mark.xfail(reason=f"{label}: {why}", strict=True))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "test_parity.py" not in report.nodeid:
        return
    match = re.search(r"\[(.*)\]$", report.nodeid)
    params = match.group(1).split("-") if match else []
    system = next((p for p in params if p in ("appliance", "previous")), "")
    name = re.sub(r"\[.*\]$", "", report.nodeid.split("::")[-1])
    rest = "-".join(p for p in params if p != system)
    key = f"{name}[{rest}]" if rest else name
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        outcome = "holds" if report.passed else "failed"
        if hasattr(report, "wasxfail"):
            outcome = "differs (deliberate)" if system == "appliance" else "fails (known)"
        PARITY.setdefault(key, {})[system] = outcome


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not PARITY:
        return
    write = terminalreporter.write_line
    write("")
    write("API parity with the previous system (tests/bundle/test_parity.py):")
    write(f"{'assertion':<78} {'appliance':<22} previous")
    for key, outcomes in sorted(PARITY.items()):
        write(f"{key[:78]:<78} {outcomes.get('appliance', '-'):<22} "
              f"{outcomes.get('previous', '-')}")  # fmt: skip
    both = sum(1 for o in PARITY.values() if set(o.values()) == {"holds"} and len(o) == 2)
    ours = sum(1 for o in PARITY.values() if o.get("appliance") == "holds")
    theirs = sum(1 for o in PARITY.values() if o.get("previous") == "holds")
    write(f"{len(PARITY)} assertions: {ours} hold on the appliance, {theirs} on the previous "
          f"system, {both} on both")  # fmt: skip
