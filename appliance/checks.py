"""Live checks for ``appliance check``: is there room on the volumes, does the database
answer, does a scheduler take wake-ups at each address, does each runner's engine
answer, does it have the images the services name, can the webhook secret be read."""

from __future__ import annotations

import asyncio
import re
import sys

from appliance.catalogue import Catalogue
from appliance.diskspace import volumes, warnings
from appliance.errors import ConfigError, RunnerError, StoreError
from appliance.messaging import WakeSender, wake_keys
from appliance.runners.base import Probing
from appliance.runners.config import create_backend
from appliance.scheduler.notifying import load_secret
from appliance.settings import Settings
from appliance.store import Store
from appliance.units import format_size


def redact(uri: str) -> str:
    """A connection string without its password."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", uri)


def _problem(text: str) -> int:
    print(text, file=sys.stderr)
    return 1


async def check_database(settings: Settings) -> int:
    store = Store(settings.mongodb_uri, settings.mongodb_database, retry_seconds=0,
                  server_timeout_ms=3000, timeout_ms=5000)  # fmt: skip
    try:
        await store.ping()
    except StoreError as exc:
        return _problem(f"database: {redact(settings.mongodb_uri)} does not answer: {exc}")
    finally:
        await store.close()
    print(f"database: {redact(settings.mongodb_uri)} answers")
    return 0


async def check_runner(settings: Settings, catalogue: Catalogue, runner_id: str) -> int:
    config = catalogue.runners[runner_id]
    backend = create_backend(config, settings)
    problems = 0
    try:
        if not isinstance(backend, Probing):
            print(f"runner {runner_id}: {config.backend} backend (it has nothing to ask)")
            return 0
        try:
            about = await backend.probe()
        except RunnerError as exc:
            return _problem(f"{config.source}: runner {runner_id} does not answer: {exc}")
        print(f"runner {runner_id}: {about}")
        users: dict[str, list[str]] = {}
        for service in catalogue.services.values():
            if service.image and any(c.runner == runner_id for c in service.runners.values()):
                users.setdefault(service.image, []).append(service.source)
        try:
            missing = await backend.missing_images(sorted(users))
        except RunnerError as exc:
            return _problem(f"runner {runner_id}: cannot list its images: {exc}")
        for image in missing:
            for source in users[image]:
                problems += _problem(f"{source}: image: {image} is not in runner {runner_id}'s "
                                     "engine (build it: scripts/build-images)")  # fmt: skip
    finally:
        await backend.close()
    return problems


async def check_wakeups(settings: Settings, within: float = 3.0) -> int:
    """Whether a scheduler takes wake-ups at each ``scheduler_address`` (a wrong address
    loses no job: new jobs then start at the schedulers' sweeps instead of at once)."""
    try:
        sender = WakeSender(settings.scheduler_address, keys=wake_keys(settings))
    except ConfigError as exc:
        return _problem(f"wake-ups: {exc}")
    try:
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            if set(sender.connections().values()) == {"connected"}:
                break
            await asyncio.sleep(0.05)
        problems = 0
        for address, state in sender.connections().items():
            if state == "connected":
                print(f"wake-ups: a scheduler takes them at {address}")
            else:
                problems += _problem(
                    f"wake-ups: nothing takes them at {address} ({state}) within {within:g} s: "
                    f"new jobs start at the schedulers' sweeps (every {settings.sweep_seconds:g}"
                    " s) instead of at once; check scheduler_address (and wake_keys)"
                )
        return problems
    finally:
        sender.close()


def check_volumes(settings: Settings) -> int:
    """Each volume's space; a warning past ``disk_warning_percent``, a problem when new
    work is already refused for want of space."""
    problems = 0
    spaces = volumes(settings)
    for space in spaces:
        print(f"{space.volume}: {space.path}: {format_size(space.free)} free of "
              f"{format_size(space.size)} ({space.used_percent:.0f}% full)")  # fmt: skip
        if settings.min_free_disk and space.free < settings.min_free_disk:
            problems += _problem(f"{space.volume}: less than min_free_disk "
                                 f"({format_size(settings.min_free_disk)}) is free: new "
                                 "uploads and jobs are refused (507)")  # fmt: skip
    for warning in warnings(settings, spaces):
        print(f"warning: {warning}", file=sys.stderr)
    return problems


def check_webhooks(settings: Settings) -> int:
    """Whether the webhook secret can be read (when webhooks are on)."""
    if settings.webhook_secret_file is None:
        print("webhooks: off (no signing key file is set)")
        return 0
    try:
        load_secret(settings.webhook_secret_file)
    except ConfigError as exc:
        return _problem(f"webhooks: {exc}")
    print(f"webhooks: on, signed with the key in {settings.webhook_secret_file}")
    return 0


async def check_s3(settings: Settings) -> int:
    """Whether the S3 server of TES staging answers these keys for each root's bucket."""
    if not (settings.tes_enabled and settings.tes_s3_endpoint):
        return 0
    from appliance.tes import s3

    problems = 0
    try:
        site = s3.Site.of(settings)
    except s3.S3Error as exc:
        return _problem(f"s3: {exc}")
    async with s3.Client(site) as client:
        for root in dict.fromkeys(settings.tes_s3_roots):
            bucket, _, prefix = root.partition("/")
            prefix = prefix.split("/{client}")[0].removesuffix("{client}").rstrip("/")
            try:
                await client.probe(bucket, prefix)
            except s3.S3Error as exc:
                problems += _problem(f"s3: {settings.tes_s3_endpoint}: {exc}")
            else:
                print(f"s3: {settings.tes_s3_endpoint}: s3://{root} can be listed with the keys "
                      f"in {settings.tes_s3_credentials_file}")  # fmt: skip
    return problems


async def live_checks(settings: Settings, catalogue: Catalogue) -> int:
    """Print what answers and what is missing; returns the number of problems."""
    problems = await asyncio.to_thread(check_volumes, settings)
    problems += await check_database(settings)
    problems += await check_wakeups(settings)
    problems += check_webhooks(settings)
    problems += await check_s3(settings)
    for runner_id in sorted(catalogue.runners):
        problems += await check_runner(settings, catalogue, runner_id)
    return problems
