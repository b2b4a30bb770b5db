"""Files in the site's shared folders (``tes_file_roots``), which other people write too.

A task's ``file://`` input or output names a path under one of these folders. Anyone who
can write there (every workflow user of a cluster) can swap a name for a symlink at any
moment, so no name is checked and then opened again by its path: every path is walked
one component at a time from a descriptor of its root, each component opened with
``O_NOFOLLOW``. A symlink met on the way is read and followed by the walk itself, and
only while it stays beneath the same root (an absolute target must lie under the root,
``..`` may not climb above it); any other is refused. An output is written to a fresh
name in its folder and renamed over the old name, so a symlink left there is replaced,
never written through. A DIRECTORY input is walked by descriptor; symlinks, FIFOs and
devices inside it are skipped.

A root may hold ``{client}`` as a whole component (``/shared/{client}``): each TES client
then has a folder of its own there, made on its first output. What comes before
``{client}`` is the site's own (it may itself be a symlink); the client's folder and the
components after it are never followed as symlinks. Without ``{client}``, a root is one
space shared by every client.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import re
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from appliance.safefs import regular_files
from appliance.settingvalues import FILE_ROOT_CLIENT as CLIENT

CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
MAX_LINKS = 40  # as the kernel's own limit on symlinks in one lookup
CHUNK = 1024 * 1024
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class SharedError(Exception):
    """A path under the shared folders that the scheduler may not use, or could not."""


@dataclass(frozen=True)
class Root:
    """One client's root: the site's folder (``base``, trusted), then folders of the
    client's (``private``: never symlinks; empty for a shared root)."""

    base: str
    private: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return posixpath.join(self.base, *self.private)

    def holds(self, path: str) -> list[str] | None:
        """The components of ``path`` below this root, or None if it is not under it."""
        for prefix in {self.path, posixpath.join(os.path.realpath(self.base), *self.private)}:
            if path == prefix:
                return []
            if path.startswith(prefix.rstrip("/") + "/"):
                return [p for p in path[len(prefix) :].split("/") if p]
        return None


def roots_for(templates: tuple[str, ...], client: str) -> list[Root]:
    """The roots ``client`` may use: each template, with its folder for ``{client}``."""
    roots = []
    for template in templates:
        if CLIENT not in template:
            roots.append(Root(template))
            continue
        if not CLIENT_NAME.fullmatch(client):
            continue  # not a name that can be a folder: no private root
        base, _, rest = template.partition("/" + CLIENT)
        private = (client, *(p for p in rest.split("/") if p))
        roots.append(Root(base or "/", private))
    return roots


def locate(url_path: str, templates: tuple[str, ...], client: str) -> tuple[Root, list[str]]:
    """The root of the path of a file:// URL and its components below it;
    SharedError if it lies under none of the client's roots."""
    if "\x00" in url_path or not url_path.startswith("/"):
        raise SharedError(f"{url_path!r} is not an absolute path")
    if ".." in url_path.split("/"):
        raise SharedError(f"{url_path!r} holds '..'")
    path = posixpath.normpath(url_path)
    # the longest root first: /shared/{client} before /shared
    for root in sorted(roots_for(templates, client), key=lambda r: -len(r.path)):
        parts = root.holds(path)
        if parts is not None:
            return root, parts
    allowed = ", ".join(t.replace(CLIENT, client) for t in templates) or "none are configured"
    raise SharedError(f"{path} is outside the folders tasks may use ({allowed})")


class Walk:
    """Descriptors of the folders from a root down to where the walk has got to."""

    def __init__(self, root: Root, *, create: bool) -> None:
        self.root = root
        self.create = create
        self.links = 0
        self.stack: list[int] = []
        try:
            self.stack.append(os.open(root.base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        except OSError as exc:
            raise SharedError(f"cannot open the folder {root.base}: {exc.strerror}") from None
        try:
            for part in root.private:
                fd = self._open_dir(part)
                if fd is None:
                    raise SharedError(f"{root.path}: a symbolic link where a client's folder is")
                self.stack.append(fd)
        except BaseException:
            self.close()
            raise
        self.floor = len(self.stack)  # '..' never climbs above the root

    def close(self) -> None:
        while self.stack:
            os.close(self.stack.pop())

    def __enter__(self) -> Walk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def top(self) -> int:
        return self.stack[-1]

    def _open_dir(self, name: str) -> int | None:
        """A descriptor of the folder ``name`` in ``top`` (made if ``create``); None if
        ``name`` is a symlink. SharedError if it is something else, or missing."""
        for _ in range(3):  # made or removed meanwhile by someone else: look again
            try:
                return os.open(name, _DIR, dir_fd=self.top)
            except FileNotFoundError:
                if not self.create:
                    raise SharedError(f"{name!r}: no such folder") from None
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=self.top)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise SharedError(f"{name!r}: {exc.strerror}") from None
                if self._is_link(name):
                    return None
                raise SharedError(f"{name!r} is not a folder") from None
        raise SharedError(f"{name!r} keeps changing")

    def _is_link(self, name: str) -> bool:
        try:
            return stat.S_ISLNK(os.stat(name, dir_fd=self.top, follow_symlinks=False).st_mode)
        except OSError:
            return False

    def _target(self, name: str) -> list[str]:
        """The components to walk instead of the symlink ``name`` (from ``top``, or from
        the root for an absolute target, the walk moved back to it)."""
        self.links += 1
        if self.links > MAX_LINKS:
            raise SharedError(f"more than {MAX_LINKS} symbolic links on the way")
        try:
            target = os.readlink(name, dir_fd=self.top)
        except OSError:  # no longer a symlink: look at it again
            return [name]
        if not target.startswith("/"):
            return target.split("/")
        below = self.root.holds(posixpath.normpath(target))
        if below is None or ".." in target.split("/"):
            raise SharedError(f"{name!r} is a symbolic link out of the folders tasks may use")
        while len(self.stack) > self.floor:
            os.close(self.stack.pop())
        return below

    def into(self, parts: list[str]) -> None:
        """Walk down through the folders ``parts``, following symlinks beneath the root."""
        pending = list(reversed(parts))
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if len(self.stack) <= self.floor:
                    raise SharedError("a symbolic link leads above the folders tasks may use")
                os.close(self.stack.pop())
                continue
            fd = self._open_dir(part)
            if fd is None:
                pending.extend(reversed(self._target(part)))
            else:
                self.stack.append(fd)

    def open_file(self, parts: list[str]) -> BinaryIO:
        """The regular file at ``parts`` (below where the walk is), for reading."""
        *folders, name = parts or [""]
        self.into(folders)
        while True:
            if name in ("", ".", ".."):
                raise SharedError("a folder, not a file")
            try:
                fd = os.open(name, _FILE, dir_fd=self.top)
            except FileNotFoundError:
                raise SharedError(f"{name!r}: no such file") from None
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise SharedError(f"{name!r}: {exc.strerror}") from None
                *folders, name = self._target(name) or [""]
                self.into(folders)
                continue
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise SharedError(f"{name!r} is not a regular file")
            return os.fdopen(fd, "rb")

    def write_file(self, parts: list[str], source: BinaryIO) -> int:
        """Write ``source`` to ``parts`` (folders made as needed) through a fresh name
        renamed over the old one; the bytes written."""
        *folders, name = parts or [""]
        if name in ("", ".", ".."):
            raise SharedError("an output needs a file name")
        self.into(folders)
        temporary = f".appliance-{secrets.token_hex(8)}.part"
        fd = os.open(temporary, _NEW, 0o644, dir_fd=self.top)
        try:
            with os.fdopen(fd, "wb") as sink:
                size = copy(source, sink)
            os.rename(temporary, name, src_dir_fd=self.top, dst_dir_fd=self.top)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=self.top)
            if isinstance(exc, IsADirectoryError):
                raise SharedError(f"{name!r} is a folder") from None
            raise
        return size


def copy(source: BinaryIO, sink: BinaryIO) -> int:
    size = 0
    while chunk := source.read(CHUNK):
        sink.write(chunk)
        size += len(chunk)
    return size


def read_file(root: Root, parts: list[str]) -> BinaryIO:
    """The regular file at ``parts`` below ``root``, open for reading."""
    with Walk(root, create=False) as walk:
        return walk.open_file(parts)


def write_file(root: Root, parts: list[str], source: BinaryIO) -> int:
    with Walk(root, create=True) as walk:
        return walk.write_file(parts, source)


def write_tree(root: Root, parts: list[str], files: Iterator[tuple[str, BinaryIO]]) -> list[int]:
    """Write each (relative path, open file) of ``files`` below ``parts``; their sizes."""
    sizes = []
    for relative, source in files:
        with source, Walk(root, create=True) as walk:
            walk.into(parts)
            sizes.append(walk.write_file(relative.split("/"), source))
    return sizes


@contextlib.contextmanager
def read_tree(root: Root, parts: list[str]) -> Iterator[Iterator[tuple[str, BinaryIO]]]:
    """The regular files of the folder at ``parts`` below ``root``: (relative path, open
    file), walked by descriptor; symlinks, FIFOs and devices inside are skipped."""
    with Walk(root, create=False) as walk:
        walk.into(parts)
        yield regular_files(walk.top)
