"""Running the web app on hypercorn, with the bind address and workers from settings.

With one worker the app runs in this process. With more, this process supervises that
many worker processes (``appliance web --worker``), each listening on the same address
with a socket of its own (SO_REUSEPORT), so that the kernel spreads connections over
them. (Hypercorn's own multi-worker mode shares one socket, and under a burst of
connections one worker takes nearly all of them.) A worker that dies is replaced.
Each worker runs on uvloop when it is installed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config
from hypercorn.middleware import ProxyFixMiddleware

from appliance.metrics import MULTIPROCESS_ENV
from appliance.settings import Settings
from appliance.web.app import create_app

log = logging.getLogger(__name__)
RESTARTS_ALLOWED = 5  # within RESTART_WINDOW seconds, before the supervisor gives up
RESTART_WINDOW = 60.0


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    config.bind = [settings.web_bind]
    # More than one: hypercorn then gives each worker's socket SO_REUSEPORT.
    config.workers = settings.web_workers
    config.accesslog = None
    config.errorlog = "-"
    config.graceful_timeout = 10
    config.keep_alive_timeout = 30  # longer than the proxy's upstream keepalive_timeout (20 s)
    config.backlog = 1024
    # Uploads are limited by the app itself while streaming; hypercorn need not buffer.
    config.h11_max_incomplete_size = 64 * 1024
    return config


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
        return
    uvloop.run(main())


def run_web(settings: Settings, *, worker: bool = False) -> int:
    if worker or settings.web_workers == 1:
        _run(lambda: _serve_one(settings))
        return 0
    return _supervise(settings.web_workers)


async def _serve_one(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    config = hypercorn_config(settings)
    # Only the proxy talks to us: its X-Forwarded-Proto/For say the client's scheme and
    # address (one hop), so redirects keep https behind TLS.
    app = ProxyFixMiddleware(create_app(settings), mode="legacy", trusted_hops=1)  # type: ignore[arg-type]
    # Each worker is its own process (``workers`` only turns SO_REUSEPORT on): hypercorn's
    # warning that ``serve`` ignores it says nothing here.
    warnings.filterwarnings("ignore", message="The config `workers` has no affect")
    await serve(app, config, shutdown_trigger=stop.wait)


def _start_worker(metrics_dir: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, MULTIPROCESS_ENV: metrics_dir}  # the workers' metrics, summed
    return subprocess.Popen([sys.executable, "-m", "appliance", "web", "--worker"], env=env)


def _supervise(count: int) -> int:
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with tempfile.TemporaryDirectory(prefix="appliance-metrics-") as metrics_dir:
        return _watch(count, metrics_dir, lambda: stopping)


def _watch(count: int, metrics_dir: str, stopping_now: Callable[[], bool]) -> int:
    """Keeps ``count`` workers running until told to stop (or they keep dying)."""
    workers = [_start_worker(metrics_dir) for _ in range(count)]
    restarts: list[float] = []
    status = 0
    stopping = False
    while not stopping and not stopping_now():
        time.sleep(0.2)
        for index, process in enumerate(workers):
            code = process.poll()
            if code is None or stopping or stopping_now():
                continue
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < RESTART_WINDOW] + [now]
            if len(restarts) > RESTARTS_ALLOWED:
                log.error("web workers keep dying (last exit code %s); stopping", code)
                stopping, status = True, 1
                break
            log.warning("web worker %d exited with code %s; starting another", process.pid, code)
            workers[index] = _start_worker(metrics_dir)
    for process in workers:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for process in workers:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return status
