"""Moving a task's files in and out: done by the scheduler, never by an executor.

In, before the first executor: inline ``content`` is written; ``file://`` is copied from
under the site's allowed folders (``tes_file_roots``; a symlink that leads out of them is
refused); ``http(s)://`` is fetched with a size cap, a time limit, at most five
redirects, and never from a loopback, private or link-local address unless
``tes_fetch_private`` allows it (each hop is checked). Out, after the last executor
ended well: to ``file://`` under the allowed folders, or by ``http(s)`` PUT; a wildcard
output (``path_prefix``) sends every matching file to the URL plus its path after the
prefix. Any failure is a ``StagingError`` whose message becomes the task's system log.
The only module that imports httpx.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from appliance.plan import Plan, Transfer
from appliance.settings import Settings

MAX_REDIRECTS = 5
CHUNK = 1024 * 1024


class StagingError(Exception):
    """A task's input could not be fetched, or an output not sent."""


def _under_roots(path: Path, roots: tuple[str, ...]) -> bool:
    text = str(path)
    return any(text == root or text.startswith(root.rstrip("/") + "/") for root in roots)


def _local(url: str, roots: tuple[str, ...]) -> Path:
    """The path of a file:// URL, checked to be under ``roots`` once symlinks are resolved."""
    path = Path(os.path.normpath(unquote(urlsplit(url).path)))
    real = Path(os.path.realpath(path))
    if not _under_roots(path, roots) or not _under_roots(real, roots):
        raise StagingError(f"{url}: outside the folders tasks may use")
    return real


def _regular_files(root: Path) -> Iterator[Path]:
    for base, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not (Path(base) / d).is_symlink()]
        for name in files:
            path = Path(base) / name
            if path.is_file() and not path.is_symlink():
                yield path


def _copy_in(source: Path, target: Path, directory: bool) -> None:
    if directory:
        if not source.is_dir():
            raise StagingError(f"{source} is not a directory")
        for path in _regular_files(source):
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
        target.mkdir(parents=True, exist_ok=True)
        return
    if not source.is_file():
        raise StagingError(f"{source} is not a file")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


async def _check_host(url: str, settings: Settings) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StagingError(f"{url}: only http and https are fetched")
    if settings.tes_fetch_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443,
                                                             type=socket.SOCK_STREAM)  # fmt: skip
    except OSError as exc:
        raise StagingError(f"{url}: cannot resolve {parts.hostname}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if (address.is_private or address.is_loopback or address.is_link_local
                or address.is_multicast or address.is_reserved or address.is_unspecified):  # fmt: skip
            raise StagingError(f"{url}: {parts.hostname} is a private address "
                               f"({address}); setting tes_fetch_private allows it")  # fmt: skip


async def _fetch(url: str, target: Path, settings: Settings) -> None:
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
                    raise StagingError(f"{url}: answered {response.status_code}")
                target.parent.mkdir(parents=True, exist_ok=True)
                size = 0
                with target.open("wb") as sink:
                    async for chunk in response.aiter_bytes(CHUNK):
                        size += len(chunk)
                        if size > settings.tes_fetch_max_bytes:
                            raise StagingError(
                                f"{url}: larger than {settings.tes_fetch_max_bytes} bytes"
                            )
                        sink.write(chunk)
                return
        raise StagingError(f"{url}: more than {MAX_REDIRECTS} redirects")


async def _put(path: Path, url: str, settings: Settings) -> None:
    await _check_host(url, settings)

    async def body() -> AsyncIterator[bytes]:
        with path.open("rb") as source:
            while chunk := source.read(CHUNK):
                yield chunk

    async with httpx.AsyncClient(timeout=settings.tes_fetch_timeout) as client:
        response = await client.put(url, content=body(),
                                    headers={"Content-Length": str(path.stat().st_size)})  # fmt: skip
    if response.status_code >= 300:
        raise StagingError(f"{url}: the upload answered {response.status_code}")


async def stage_in(plan: Plan, workdir: Path, settings: Settings) -> None:
    for transfer in plan.stage_in:
        target = workdir / transfer.path
        scheme = urlsplit(transfer.url).scheme.lower()
        try:
            if transfer.content is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(target.write_text, transfer.content)
            elif scheme == "file":
                source = _local(transfer.url, settings.tes_file_roots)
                await asyncio.to_thread(_copy_in, source, target, transfer.directory)
            elif scheme in ("http", "https"):
                if transfer.directory:
                    raise StagingError(f"{transfer.url}: a DIRECTORY cannot be fetched over http")
                await _fetch(transfer.url, target, settings)
            else:
                raise StagingError(f"{transfer.url}: nothing stages {scheme}:// URLs on this site")
        except (OSError, httpx.HTTPError) as exc:
            raise StagingError(f"input {transfer.container_path} from {transfer.url or 'content'}: "
                               f"{exc}") from None  # fmt: skip


def _matches(workdir: Path, transfer: Transfer) -> list[tuple[Path, str]]:
    """The files an output sends: (the file, the URL it goes to)."""
    if transfer.prefix is None:
        return [(workdir / transfer.path, transfer.url)]
    base = workdir / transfer.prefix
    found = []
    for match in sorted(workdir.glob(transfer.path)):
        if not _inside(match, workdir) or not match.is_file():
            continue  # a wildcard sends the task's own regular files
        relative = match.relative_to(base).as_posix()
        found.append((match, transfer.url.rstrip("/") + "/" + relative))
    return found


def _inside(path: Path, workdir: Path) -> bool:
    """Whether ``path`` is the work directory's own, not reached through a link an
    executor made (which could lead to any file of the scheduler's machine)."""
    real = Path(os.path.realpath(path))
    return not path.is_symlink() and real.is_relative_to(os.path.realpath(workdir))


async def _send(path: Path, url: str, workdir: Path, settings: Settings) -> int:
    """Send one output file; its size."""
    if not _inside(path, workdir) or not path.is_file():
        raise StagingError(f"{path.name} was not made (or is not a regular file of the task)")
    size = path.stat().st_size
    scheme = urlsplit(url).scheme.lower()
    if scheme == "file":
        destination = Path(os.path.normpath(unquote(urlsplit(url).path)))
        if not _under_roots(Path(os.path.realpath(destination.parent)), settings.tes_file_roots):
            raise StagingError(f"{url}: outside the folders tasks may use")
        if destination.is_symlink():
            raise StagingError(f"{url}: is a symbolic link; not following it")
        await asyncio.to_thread(destination.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.copyfile, path, destination)
    elif scheme in ("http", "https"):
        await _put(path, url, settings)
    else:
        raise StagingError(f"{url}: nothing stages {scheme}:// URLs on this site")
    return size


async def stage_out(plan: Plan, workdir: Path, settings: Settings) -> list[dict[str, str]]:
    """Send every output; the TES output file logs (url, path, size_bytes)."""
    logs = []
    for transfer in plan.stage_out:
        root = workdir / "fs"
        for path, url in _matches(workdir, transfer):
            try:
                if transfer.directory and transfer.prefix is None:
                    if not _inside(path, workdir) or not path.is_dir():
                        raise StagingError(f"{transfer.container_path} was not made")
                    for item in _regular_files(path):
                        relative = item.relative_to(path).as_posix()
                        size = await _send(item, url.rstrip("/") + "/" + relative, workdir,
                                           settings)  # fmt: skip
                        logs.append({"url": url.rstrip("/") + "/" + relative, "size_bytes": str(size),
                                     "path": "/" + item.relative_to(root).as_posix()})  # fmt: skip
                    continue
                size = await _send(path, url, workdir, settings)
            except (OSError, httpx.HTTPError) as exc:
                raise StagingError(f"output {transfer.container_path} to {url}: {exc}") from None
            container = "/" + path.relative_to(root).as_posix() if path.is_relative_to(root) else ""
            logs.append({"url": url, "path": container or transfer.container_path,
                         "size_bytes": str(size)})  # fmt: skip
    return logs
