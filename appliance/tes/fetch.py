"""http(s) inputs and outputs of tasks: fetched and sent by the scheduler.

An input is fetched with a size cap, a time limit and at most five redirects, and never
from a loopback, private or link-local address unless ``tes_fetch_private`` allows it
(each hop is checked); an output is sent by ``PUT`` under the same rules. The only
module that imports httpx besides appliance.tes.s3 (S3 is spoken over it too).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

import httpx

from appliance.settings import Settings
from appliance.webhooks import public_address

MAX_REDIRECTS = 5
CHUNK = 1024 * 1024


class FetchError(Exception):
    """An http(s) input could not be fetched, or an output not sent."""


async def check_host(url: str, *, private: bool, allowed_by: str) -> None:
    """FetchError unless ``url`` is http(s) and its host resolves to public addresses
    only (or ``private``, the setting named ``allowed_by``, lets any through)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"{url}: only http and https are fetched")
    if private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443,
                                                             type=socket.SOCK_STREAM)  # fmt: skip
    except OSError as exc:
        raise FetchError(f"{url}: cannot resolve {parts.hostname}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not public_address(address):
            raise FetchError(f"{url}: {parts.hostname} is not a public address "
                             f"({address}); setting {allowed_by} allows it")  # fmt: skip


async def _check_host(url: str, settings: Settings) -> None:
    await check_host(url, private=settings.tes_fetch_private, allowed_by="tes_fetch_private")


async def fetch(url: str, sink: BinaryIO, settings: Settings) -> int:
    """Write what ``url`` answers to ``sink``; the bytes written."""
    try:
        async with httpx.AsyncClient(
            timeout=settings.tes_fetch_timeout, follow_redirects=False
        ) as client:
            for _ in range(MAX_REDIRECTS + 1):
                await _check_host(url, settings)
                async with client.stream("GET", url) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code != 200:
                        raise FetchError(f"{url}: answered {response.status_code}")
                    size = 0
                    async for chunk in response.aiter_bytes(CHUNK):
                        size += len(chunk)
                        if size > settings.tes_fetch_max_bytes:
                            raise FetchError(
                                f"{url}: larger than {settings.tes_fetch_max_bytes} bytes"
                            )
                        await asyncio.to_thread(sink.write, chunk)
                    return size
    except httpx.HTTPError as exc:
        raise FetchError(f"{url}: {exc}") from None
    raise FetchError(f"{url}: more than {MAX_REDIRECTS} redirects")


async def put(source: BinaryIO, size: int, url: str, settings: Settings) -> None:
    """Send ``size`` bytes of ``source`` to ``url``."""
    await _check_host(url, settings)

    async def body() -> AsyncIterator[bytes]:
        while chunk := await asyncio.to_thread(source.read, CHUNK):
            yield chunk

    try:
        async with httpx.AsyncClient(timeout=settings.tes_fetch_timeout) as client:
            response = await client.put(url, content=body(),
                                        headers={"Content-Length": str(size)})  # fmt: skip
    except httpx.HTTPError as exc:
        raise FetchError(f"{url}: {exc}") from None
    if response.status_code >= 300:
        raise FetchError(f"{url}: the upload answered {response.status_code}")


async def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float,
               private: bool, allowed_by: str) -> int:  # fmt: skip
    """POST ``body`` to ``url`` (no redirects followed, the host checked as for a fetch);
    the status answered. FetchError when nothing answers."""
    await check_host(url, private=private, allowed_by=allowed_by)
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise FetchError(f"{url}: {exc.__class__.__name__}: {exc}") from None
    return response.status_code
