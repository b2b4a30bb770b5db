"""Moving a task's files in and out: done by the scheduler, never by an executor.

In, before the first executor: inline ``content`` is written; ``file://`` is copied from
under the site's shared folders (``appliance.tes.shared``: walked by descriptor, a
symlink followed only while it stays beneath its root); ``http(s)://`` is fetched
(``appliance.tes.fetch``); ``s3://`` is read from the site's S3 server
(``appliance.tes.s3``), a DIRECTORY as every object below its prefix. Out, after the last executor ended well: to ``file://`` under
the shared folders (written to a fresh name and renamed), by ``http(s)`` PUT, or to S3; a
wildcard output (``path_prefix``) sends every matching file to the URL plus its path
after the prefix. The job's side is read and written through ``appliance.safefs``: never
through a symlink an executor left. Any failure is a ``StagingError`` whose message
becomes the task's system log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from appliance import safefs
from appliance.plan import Plan, PlanError, Transfer
from appliance.settings import Settings
from appliance.tes import s3, shared
from appliance.tes.fetch import FetchError, fetch, put

FAILURES = (OSError, PlanError, shared.SharedError, FetchError, s3.S3Error)


class StagingError(Exception):
    """A task's input could not be fetched, or an output not sent."""


def _place(url: str, settings: Settings, client: str) -> tuple[shared.Root, list[str]]:
    return shared.locate(unquote(urlsplit(url).path), settings.tes_file_roots, client)


def _write_content(workdir: Path, relative: str, content: str) -> None:
    with safefs.create(workdir, relative) as sink:
        sink.write(content.encode())


def _copy_in(transfer: Transfer, workdir: Path, settings: Settings, client: str) -> None:
    root, parts = _place(transfer.url, settings, client)
    if not transfer.directory:
        with shared.read_file(root, parts) as source, safefs.create(workdir, transfer.path) as sink:
            shared.copy(source, sink)
        return
    safefs.make_dirs(workdir, transfer.path)
    with shared.read_tree(root, parts) as files:
        for relative, source in files:
            with source, safefs.create(workdir, f"{transfer.path}/{relative}") as sink:
                shared.copy(source, sink)


async def _fetch_in(transfer: Transfer, workdir: Path, settings: Settings) -> None:
    if transfer.directory:
        raise StagingError(f"{transfer.url}: a DIRECTORY cannot be fetched over http")
    with safefs.create(workdir, transfer.path) as sink:
        await fetch(transfer.url, sink, settings)


class _S3:
    """One connection to the site's S3 server for a task's transfers, made when needed."""

    def __init__(self, settings: Settings, stack: contextlib.AsyncExitStack) -> None:
        self.settings, self.stack = settings, stack
        self.made: s3.Client | None = None

    async def client(self) -> s3.Client:
        if self.made is None:
            made = s3.Client(s3.Site.of(self.settings))
            self.made = await self.stack.enter_async_context(made)
        return self.made


async def _s3_in(transfer: Transfer, workdir: Path, settings: Settings, client: str,
                 store: _S3) -> None:  # fmt: skip
    bucket, key = s3.locate(transfer.url, settings, client)
    budget = settings.tes_fetch_max_bytes
    if not transfer.directory:
        with safefs.create(workdir, transfer.path) as sink:
            await (await store.client()).get(bucket, key, sink, budget)
        return
    objects = [(name, size) for name, size in await (await store.client()).list(bucket, key)
               if not name.endswith("/")]  # fmt: skip
    if not objects:
        raise StagingError(f"{transfer.url}: no object is stored below this prefix")
    if sum(size for _, size in objects) > budget:
        raise StagingError(f"{transfer.url}: larger than {budget} bytes (tes_fetch_max_bytes)")
    safefs.make_dirs(workdir, transfer.path)
    for name, _ in objects:
        below = name[len(key) + 1 :] if key else name
        with safefs.create(workdir, f"{transfer.path}/{below}") as sink:
            budget -= await (await store.client()).get(bucket, name, sink, budget)


async def stage_in(plan: Plan, workdir: Path, settings: Settings, client: str) -> None:
    """Fetch every input of ``plan`` into the job's directory ``workdir``; ``client`` is
    the task's owner (whose shared folders its ``file://`` URLs name)."""
    async with contextlib.AsyncExitStack() as stack:
        await _stage_in(plan, workdir, settings, client, _S3(settings, stack))


async def _stage_in(plan: Plan, workdir: Path, settings: Settings, client: str,
                    store: _S3) -> None:  # fmt: skip
    for transfer in plan.stage_in:
        scheme = urlsplit(transfer.url).scheme.lower()
        try:
            if transfer.content is not None:
                await asyncio.to_thread(_write_content, workdir, transfer.path, transfer.content)
            elif scheme == "file":
                await asyncio.to_thread(_copy_in, transfer, workdir, settings, client)
            elif scheme in ("http", "https"):
                await _fetch_in(transfer, workdir, settings)
            elif scheme == "s3" and settings.tes_s3_endpoint:
                await _s3_in(transfer, workdir, settings, client, store)
            else:
                raise StagingError(f"{transfer.url}: nothing stages {scheme}:// URLs on this site")
        except FAILURES as exc:
            raise StagingError(f"input {transfer.container_path} from {transfer.url or 'content'}: "
                               f"{_reason(exc)}") from None  # fmt: skip


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    return str(exc)


def _matches(workdir: Path, transfer: Transfer) -> list[tuple[str, str]]:
    """The files an output sends: (its path in the work directory, the URL it goes to).
    A wildcard lists names only: each is opened later without following any symlink."""
    if transfer.prefix is None:
        return [(transfer.path, transfer.url)]
    found = []
    for match in sorted(workdir.glob(transfer.path)):
        relative = match.relative_to(workdir).as_posix()
        if safefs.is_plain(workdir, relative):  # a wildcard sends the task's regular files
            below = Path(relative).relative_to(transfer.prefix).as_posix()
            found.append((relative, transfer.url.rstrip("/") + "/" + below))
    return found


def _send_file(source: BinaryIO, url: str, settings: Settings, client: str) -> int:
    root, parts = _place(url, settings, client)
    return shared.write_file(root, parts, source)


async def _send(source: BinaryIO, url: str, settings: Settings, client: str,
                store: _S3) -> int:  # fmt: skip
    """Send one open output file to ``url``; its size."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "s3" and settings.tes_s3_endpoint:
        bucket, key = s3.locate(url, settings, client)
        size = os.fstat(source.fileno()).st_size
        await (await store.client()).put(bucket, key, source, size)
        return size
    if scheme == "file":
        size = await asyncio.to_thread(_send_file, source, url, settings, client)
        return size
    if scheme in ("http", "https"):
        size = os.fstat(source.fileno()).st_size
        await put(source, size, url, settings)
        return size
    raise StagingError(f"{url}: nothing stages {scheme}:// URLs on this site")


def _container_path(relative: str) -> str:
    """A path of the work directory as the executors saw it (``fs/data/x`` -> ``/data/x``)."""
    return relative.removeprefix("fs") if relative.startswith("fs/") else ""


async def _send_tree(transfer: Transfer, relative: str, url: str, workdir: Path,
                     settings: Settings, client: str, store: _S3) -> list[dict[str, str]]:  # fmt: skip
    """Send every regular file of a DIRECTORY output below ``url``."""
    logs = []
    with contextlib.ExitStack() as opened:
        try:
            files = opened.enter_context(safefs.tree(workdir, relative))
        except (OSError, PlanError):
            raise StagingError(f"{transfer.container_path} was not made") from None
        for below, source in files:
            with source:
                target = url.rstrip("/") + "/" + below
                size = await _send(source, target, settings, client, store)
            logs.append({"url": target, "path": _container_path(f"{relative}/{below}"),
                         "size_bytes": str(size)})  # fmt: skip
    return logs


async def stage_out(plan: Plan, workdir: Path, settings: Settings,
                    client: str) -> list[dict[str, str]]:  # fmt: skip
    """Send every output; the TES output file logs (url, path, size_bytes)."""
    async with contextlib.AsyncExitStack() as stack:
        return await _stage_out(plan, workdir, settings, client, _S3(settings, stack))


async def _stage_out(plan: Plan, workdir: Path, settings: Settings, client: str,
                     store: _S3) -> list[dict[str, str]]:  # fmt: skip
    logs = []
    for transfer in plan.stage_out:
        for relative, url in _matches(workdir, transfer):
            try:
                if transfer.directory and transfer.prefix is None:
                    logs += await _send_tree(transfer, relative, url, workdir, settings, client,
                                             store)  # fmt: skip
                    continue
                source = safefs.open_regular(workdir, relative)
                if source is None:
                    raise StagingError(
                        f"{transfer.container_path} was not made (or is not a regular file "
                        "of the task)"
                    )
                with source:
                    size = await _send(source, url, settings, client, store)
            except FAILURES as exc:
                raise StagingError(f"output {transfer.container_path} to {url}: "
                                   f"{_reason(exc)}") from None  # fmt: skip
            logs.append({"url": url, "path": _container_path(relative) or transfer.container_path,
                         "size_bytes": str(size)})  # fmt: skip
    return logs
