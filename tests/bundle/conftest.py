"""The bundle's tests share one running bundle: started for the first of them, stopped
(``scripts/down --volumes``) after the last."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.bundle.compose import start_bundle


@pytest.fixture(scope="package")
def bundle() -> Iterator[str]:
    """The compose bundle, running: its proxy's base URL. APPLIANCE_TEST_BUNDLE_URL names
    one already running instead (for work on these tests; CI always starts its own)."""
    running = os.environ.get("APPLIANCE_TEST_BUNDLE_URL")
    if running:
        yield running.rstrip("/")
        return
    yield from start_bundle()
