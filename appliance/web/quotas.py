"""What one client address, and all clients together, may take: checked before a
request's body is read, so a refused request costs almost nothing.

- unfinished jobs per client address (``client_max_active_jobs``): 429;
- bytes uploaded per client address and period (``client_upload_bytes`` per
  ``client_upload_period``): 429 until the period ends;
- jobs waiting to start, all clients together (``max_queued_jobs``): 503;
- free space on the uploads and jobs volumes (``min_free_disk``): 507, before they are
  full, so the jobs already running can still write their results.

Every refusal is JSON with a ``Retry-After`` header. The client's address is the one the
proxy saw or believed (``X-Real-IP``, which the proxy sets; see ``trusted_proxies``), an
IPv6 one keyed by its /64 (appliance.clientkeys): the web process must be reachable only
through the proxy, as the bundle's networks make it.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

from starlette.requests import Request

from appliance.clientkeys import client_key
from appliance.diskspace import free_bytes
from appliance.settings import Settings
from appliance.states import JobState
from appliance.store import Store
from appliance.web.errors import ApiError

WAITING = (str(JobState.ACCEPTED), str(JobState.QUEUED))
RETRY_JOBS = 30
# Seconds a count read for a quota is used again, with this process's additions since
# (appliance.store.recent): without it, three reads per submission held submissions back.
COUNT_AGE = 1.0


def client_address(request: Request) -> str:
    """The key of the request's client: its address, an IPv6 one as its /64."""
    address = request.headers.get("x-real-ip") or (request.client.host if request.client else "")
    return client_key(address)


_FREE: dict[Path, tuple[float, int]] = {}  # path -> (when, free bytes): asked once a second


async def check_disk(settings: Settings, *paths: Path) -> None:
    if not settings.min_free_disk:
        return
    for path in paths:
        seen = _FREE.get(path)
        if seen is not None and time.monotonic() - seen[0] < COUNT_AGE:
            free = seen[1]
        else:
            free = await asyncio.to_thread(free_bytes, path)
            _FREE[path] = (time.monotonic(), free)
        if 0 <= free < settings.min_free_disk:
            raise ApiError(507, "the server's storage is nearly full: new uploads and jobs wait "
                           "until space is freed", {"Retry-After": "300"})  # fmt: skip


def _window(settings: Settings) -> tuple[int, int]:
    """The number of the current upload period, and the seconds until it ends."""
    now = time.time()
    window = int(now // settings.client_upload_period)
    return window, max(1, math.ceil((window + 1) * settings.client_upload_period - now))


async def check_uploads(settings: Settings, store: Store, client: str) -> None:
    if not settings.client_upload_bytes:
        return
    window, left = _window(settings)
    if await store.upload_usage(client, window, max_age=COUNT_AGE) >= settings.client_upload_bytes:
        raise ApiError(429, f"this address uploaded its {settings.client_upload_bytes} bytes for "
                       "now; more can be sent when the period ends", {"Retry-After": str(left)})  # fmt: skip


async def count_uploads(settings: Settings, store: Store, client: str, size: int) -> None:
    if settings.client_upload_bytes and size:
        await store.add_upload_usage(client, _window(settings)[0], size)


async def check_jobs(settings: Settings, store: Store, client: str | None) -> None:
    """The global queue's cap, and (for a client address) its own cap."""
    if settings.max_queued_jobs and (
        await store.count_unfinished(states=WAITING, max_age=COUNT_AGE) >= settings.max_queued_jobs
    ):
        raise ApiError(503, "the queue is full; try again later",
                       {"Retry-After": str(RETRY_JOBS)})  # fmt: skip
    if (
        client is not None
        and settings.client_max_active_jobs
        and (
            await store.count_unfinished(client=client, max_age=COUNT_AGE)
            >= settings.client_max_active_jobs
        )
    ):
        raise ApiError(429, f"this address has {settings.client_max_active_jobs} unfinished jobs, "
                       "the most it may have; submit more when some end",
                       {"Retry-After": str(RETRY_JOBS)})  # fmt: skip


async def check_tasks(settings: Settings, store: Store, owner: str) -> None:
    """A TES client's own cap: as many unfinished tasks as an address may have jobs."""
    if settings.client_max_active_jobs and (
        await store.count_unfinished(owner=owner, max_age=COUNT_AGE)
        >= settings.client_max_active_jobs
    ):
        raise ApiError(429, f"this client has {settings.client_max_active_jobs} unfinished "
                       "tasks, the most it may have; create more when some end",
                       {"Retry-After": str(RETRY_JOBS)})  # fmt: skip


async def admit_job(request: Request, settings: Settings, store: Store) -> str:
    """Check a job submission (before its body is read); the client's address."""
    client = client_address(request)
    # One after the other: each is answered from a count at most COUNT_AGE old, read
    # again about once a second; three tasks per submission to overlap those rare reads
    # cost more than they saved.
    await check_disk(settings, settings.uploads_dir, settings.jobs_dir)
    await check_jobs(settings, store, client)
    await check_uploads(settings, store, client)
    return client


async def admit_upload(request: Request, settings: Settings, store: Store) -> str:
    client = client_address(request)
    await check_disk(settings, settings.uploads_dir)
    await check_uploads(settings, store, client)
    return client
