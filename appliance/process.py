"""Process entry points: build everything a long-running process needs from its settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from appliance.catalogue import load_catalogue
from appliance.errors import ConfigError, ConfigErrors
from appliance.messaging import CurveKeys, RpcServer
from appliance.runners.base import Backend
from appliance.runners.config import create_backend
from appliance.scheduler.core import Scheduler
from appliance.settings import Settings
from appliance.store import Store
from appliance.worker import WorkerPool

log = logging.getLogger(__name__)


async def run_scheduler(
    settings: Settings,
    stop: asyncio.Event,
    *,
    heartbeat: Path | None = None,
    runners: list[str] | None = None,
) -> None:
    """Run a scheduler for ``runners`` (default: every configured runner) until ``stop``.
    A broken runner configuration stops it at once (ConfigError, with file and key)."""
    catalogue = load_catalogue(settings)
    if catalogue.runner_errors:
        raise ConfigErrors(catalogue.runner_errors)
    chosen = runners or sorted(catalogue.runners)
    unknown = [r for r in chosen if r not in catalogue.runners]
    if unknown:
        raise ConfigError(f"no runner {', '.join(map(repr, unknown))} is configured in "
                          f"{settings.runners_dir} (configured: {', '.join(sorted(catalogue.runners))})")  # fmt: skip
    for error in catalogue.errors:
        log.error("%s", error.describe())
    settings.jobs_dir.mkdir(parents=True, exist_ok=True)
    store = Store(
        settings.mongodb_uri,
        settings.mongodb_database,
        retry_seconds=60,
        timeout_ms=int(settings.database_timeout * 1000),
    )
    backends: dict[str, Backend] = {}
    try:
        log.info("claims: %s", await store.check_claims())
        log.info("%s", await store.check_format())  # older records migrated; newer: refused
        await store.ensure_indexes()
        # Each runner configuration is instantiated once, here, and shared by every job.
        for runner_id in chosen:
            backends[runner_id] = create_backend(catalogue.runners[runner_id], settings)
        scheduler = Scheduler(settings, store, catalogue, backends, heartbeat=heartbeat)
        await scheduler.run(stop)
    finally:
        for backend in backends.values():
            with contextlib.suppress(Exception):
                await backend.close()
        await store.close()


async def run_worker(
    settings: Settings,
    stop: asyncio.Event,
    *,
    slots: int,
    state_dir: Path | None,
    keys: Path | None,
    allow: list[Path],
) -> None:
    if slots < 1:
        raise ConfigError("--slots must be at least 1")
    directory = state_dir or settings.jobs_dir / ".worker"
    directory.mkdir(parents=True, exist_ok=True)
    pool = WorkerPool(slots, directory)
    server = RpcServer(
        settings.worker_address,
        keys=CurveKeys.load(keys) if keys else None,
        allowed_clients=[CurveKeys.load_public(path) for path in allow],
    )
    pool.recover()
    serving = asyncio.create_task(server.serve(pool.handle))
    log.info("worker pool with %d slots on %s", slots, settings.worker_address)
    try:
        await stop.wait()
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        await pool.close()
        server.close()
