"""File operations inside a directory that a job can write.

A job owns its work directory: by the time the appliance touches a name there again, the
job may have left a symlink (to another user's upload, another job's outputs, or the
host's files) or a FIFO (which blocks whoever opens it) under that name, or turned a
folder into a symlink. Every function here walks the path one component at a time from
a directory descriptor, never follows a symlink, never blocks on a FIFO, and replaces
what is not a regular file instead of writing through it. The walk is free of races as
long as no process of the job runs meanwhile, which is when the appliance uses it
(between a job's steps and after its end).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from appliance.plan import clean_relative

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class UnsafePathError(OSError):
    """A name in a job's directory is not what the appliance may use (a symlink, ...)."""


def _open_dir(root: Path, parts: list[str], *, create: bool,
              owner: tuple[int, int] | None = None) -> int:  # fmt: skip
    """A descriptor of ``root/parts...``; each part must be a real directory (made if
    ``create``); with ``owner``, each is given to that uid:gid when we are root."""
    fd = os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW)  # the root is ours (it may be a symlink)
    try:
        for part in parts:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:  # ELOOP: a symlink; ENOTDIR: a file, a FIFO, ...
                raise UnsafePathError(
                    exc.errno, f"{part!r} in the job's directory is not a folder"
                ) from None
            if owner is not None and os.geteuid() == 0:
                os.fchown(child, *owner)
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _split(relative: str) -> tuple[list[str], str]:
    parts = clean_relative(relative).split("/")
    return parts[:-1], parts[-1]


def make_dirs(root: Path, relative: str, owner: tuple[int, int] | None = None) -> Path:
    """Make ``root/relative`` and the folders above it (below ``root``), refusing
    symlinks on the way; with ``owner`` (uid, gid), each is given to it when we are root."""
    parts = clean_relative(relative).split("/")
    os.close(_open_dir(root, parts, create=True, owner=owner))
    return root / "/".join(parts)


def _replace(parent: int, name: str) -> None:
    """Remove whatever is at ``name`` unless it is a folder (which is refused)."""
    try:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        raise UnsafePathError(21, f"{name!r} in the job's directory is a folder")
    os.unlink(name, dir_fd=parent)


@contextlib.contextmanager
def create(root: Path, relative: str, owner: tuple[int, int] | None = None) -> Iterator[BinaryIO]:
    """A new regular file at ``root/relative`` for writing, in place of whatever was
    there (a symlink is removed, never followed); the folders above it are made."""
    folders, name = _split(relative)
    parent = _open_dir(root, folders, create=True, owner=owner)
    try:
        _replace(parent, name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o644, dir_fd=parent)
    finally:
        os.close(parent)
    if owner is not None and os.geteuid() == 0:
        os.fchown(fd, *owner)
    with os.fdopen(fd, "wb") as sink:
        yield sink


def fresh_file(root: Path, relative: str, owner: tuple[int, int] | None = None) -> None:
    """An empty regular file at ``root/relative`` (whatever was there is replaced)."""
    with create(root, relative, owner):
        pass


def open_regular(root: Path, relative: str) -> BinaryIO | None:
    """``root/relative`` for reading if it is a regular file reached without symlinks;
    None otherwise (missing, a symlink, a FIFO, a device, ...). Never blocks."""
    try:
        folders, name = _split(relative)
        parent = _open_dir(root, folders, create=False)
    except (OSError, ValueError):
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=parent)  # fmt: skip
    except OSError:
        return None
    finally:
        os.close(parent)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


def is_plain(root: Path, relative: str) -> bool:
    """True if ``root/relative`` is a regular file reached without any symlink."""
    source = open_regular(root, relative)
    if source is None:
        return False
    source.close()
    return True


def regular_files(folder: int, prefix: str = "") -> Iterator[tuple[str, BinaryIO]]:
    """Every regular file below the folder open at descriptor ``folder`` (the caller
    keeps it), with its path relative to it: (path, the file open for reading, which the
    caller closes). Walked by descriptor, never through a symlink; FIFOs, devices and
    symlinks are skipped, and so is anything swapped for one while the walk goes on."""
    with os.scandir(folder) as listing:
        names = sorted((entry.name, entry.is_dir(follow_symlinks=False)) for entry in listing)
    for name, is_dir in names:
        if is_dir:
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=folder)
            except OSError:
                continue
            try:
                yield from regular_files(child, f"{prefix}{name}/")
            finally:
                os.close(child)
            continue
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=folder)  # fmt: skip
        except OSError:
            continue
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            continue
        yield f"{prefix}{name}", os.fdopen(fd, "rb")


@contextlib.contextmanager
def tree(root: Path, relative: str) -> Iterator[Iterator[tuple[str, BinaryIO]]]:
    """The regular files below the folder ``root/relative`` (reached without symlinks),
    as ``regular_files`` gives them; UnsafePathError if it is not a folder."""
    fd = _open_dir(root, clean_relative(relative).split("/"), create=False)
    try:
        yield regular_files(fd)
    finally:
        os.close(fd)
