"""Shared fixtures. Tests run against the real MongoDB-protocol server that scripts/test
starts (APPLIANCE_TEST_MONGODB_URI); without one they fail, never skip."""

from __future__ import annotations

import asyncio
import gc
import io
import os
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient

from appliance.store import Store, new_id
from tests.dbserver import Server

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


# A test that needs a service (a MongoDB-protocol server, the Docker engine, nginx, the
# SLURM or Kubernetes cluster, helm, the previous system installed) is marked ``services``; the others are the fast core
# suite, which runs in seconds on a machine with none of them: pytest -m "not services".
SERVICE_FIXTURES = {"mongodb_uri", "database_name", "server"}
SERVICE_MODULES = {"test_docker_engine", "test_isolation", "test_helm_chart",
                   "test_helm_install", "test_helm_upgrade", "test_kubernetes", "test_slurm", "test_faults",
                   "test_outage", "test_jalview_live",
                   "test_previous_command_lines"}  # fmt: skip # the previous system's code


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = Path(str(item.path)).stem
        if (SERVICE_FIXTURES & set(getattr(item, "fixturenames", ()))
                or module in SERVICE_MODULES or "bundle" in item.nodeid.split("/")):  # fmt: skip
            item.add_marker(pytest.mark.services)


STUCK_AFTER = 180.0  # seconds of one test after which its asyncio tasks are printed
STUCK_LOG = ROOT / "build" / "stuck-tasks.log"


def _print_tasks(name: str) -> None:
    """Print the stack of every task of every running event loop (from a timer thread:
    the dump itself runs in the loop's own thread), so that a test stuck in an await
    says where."""
    loops = [o for o in gc.get_objects()
             if isinstance(o, asyncio.AbstractEventLoop) and o.is_running()]  # fmt: skip

    def dump() -> None:
        tasks = asyncio.all_tasks()
        text = io.StringIO()
        print(f"\n--- {name}: {len(tasks)} asyncio tasks after {STUCK_AFTER:.0f} s ---",
              file=text)  # fmt: skip
        for task in tasks:
            task.print_stack(file=text)
        print(text.getvalue(), file=sys.stderr)  # shown with the test's report
        STUCK_LOG.parent.mkdir(parents=True, exist_ok=True)
        with STUCK_LOG.open("a") as log:  # kept even if the run is killed
            log.write(text.getvalue())

    for loop in loops:
        loop.call_soon_threadsafe(dump)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    timer = threading.Timer(STUCK_AFTER, _print_tasks, args=(item.nodeid,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def mongodb_uri() -> str:
    uri = os.environ.get("APPLIANCE_TEST_MONGODB_URI")
    if not uri:
        pytest.fail("APPLIANCE_TEST_MONGODB_URI is not set: run the tests with scripts/test")
    try:
        MongoClient(uri, serverSelectionTimeoutMS=3000).admin.command("ping")
    except Exception as exc:
        pytest.fail(f"no MongoDB at {uri}: {exc}")
    return uri


@pytest.fixture(scope="session")
def database_name(mongodb_uri: str) -> Iterator[str]:
    """One database for the whole test session, dropped at the end."""
    name = f"appliance_test_{new_id()}"
    yield name
    MongoClient(mongodb_uri, serverSelectionTimeoutMS=3000).drop_database(name)


@pytest.fixture
async def store(mongodb_uri: str, database_name: str) -> AsyncIterator[Store]:
    store = Store(mongodb_uri, database_name)
    await store.ensure_indexes()
    for collection in (
        store.jobs,
        store.files,
        store.services,
        store.cancels,
        store.schedulers,
        store.marks,
        store.collection("notices"),
    ):
        await collection.delete_many({})
    yield store
    await store.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A MongoDB-protocol server of the test's own, which the test may stop and start."""
    server = Server(tmp_path / "db")
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()
