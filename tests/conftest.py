"""Shared fixtures. Tests run against the real MongoDB-protocol server that scripts/test
starts (APPLIANCE_TEST_MONGODB_URI); without one they fail, never skip."""

from __future__ import annotations

import os
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
