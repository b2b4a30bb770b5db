"""Running the web app on hypercorn, with the bind address and workers from settings."""

from __future__ import annotations

import asyncio
import signal

from hypercorn.asyncio import serve
from hypercorn.config import Config
from hypercorn.run import run

from appliance.settings import Settings
from appliance.web.app import create_app


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    config.bind = [settings.web_bind]
    config.workers = settings.web_workers
    config.accesslog = None
    config.errorlog = "-"
    config.graceful_timeout = 10
    config.keep_alive_timeout = 30
    # Uploads are limited by the app itself while streaming; hypercorn need not buffer.
    config.h11_max_incomplete_size = 64 * 1024
    return config


def run_web(settings: Settings) -> int:
    config = hypercorn_config(settings)
    if settings.web_workers > 1:
        config.application_path = "appliance.web.asgi:app"
        return run(config)
    asyncio.run(_serve_one(settings, config))
    return 0


async def _serve_one(settings: Settings, config: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(create_app(settings), config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
