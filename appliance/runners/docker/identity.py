"""A name and a home for a job's user where its image has none.

Jobs run as an unprivileged uid (``1000:1000`` by default) that most images do not
know: a program that asks for its user's name or home (Snakemake, Java's
``user.home``, Python's ``getpass``) fails with "uid not found". So the image's own
``/etc/passwd`` and ``/etc/group`` are read once (from a container made and removed
again, never started; kept for a while per image); if the job's uid is not in them,
the job gets copies with one more line for it (``appliance``, home ``/tmp``, which is
always writable), mounted read-only over the image's, and ``USER`` and ``HOME`` unless
its step sets them. Nothing else changes: the same uid, no capability, a read-only root.
An image that knows the uid is left as it is.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tarfile
import threading
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.jobwrap import record_dir
from appliance.runners.base import JOB_HOME, JOB_USER
from appliance.runners.docker.engine import Engine, EngineError, ImageNotFound

log = logging.getLogger(__name__)

NAME, HOME = JOB_USER, JOB_HOME
KEEP_SECONDS = 300.0  # an image's accounts are read again after this (a rebuilt tag)


@dataclass(frozen=True)
class Accounts:
    """An image's /etc/passwd and /etc/group ("" where it has none)."""

    passwd: str
    group: str

    def knows(self, uid: int) -> bool:
        return any(len(f := line.split(":")) > 2 and f[2] == str(uid)
                   for line in self.passwd.splitlines())  # fmt: skip

    def with_user(self, uid: int, gid: int) -> tuple[str, str]:
        """The two files with a line for the job's user (and its group) added."""
        passwd = self.passwd or "root:x:0:0:root:/root:/bin/sh\n"
        passwd += ("" if passwd.endswith("\n") else "\n") + (
            f"{NAME}:x:{uid}:{gid}:appliance job:{HOME}:/bin/sh\n")  # fmt: skip
        group = self.group or "root:x:0:\n"
        group += "" if group.endswith("\n") else "\n"
        if not any(
            len(f := line.split(":")) > 2 and f[2] == str(gid) for line in group.splitlines()
        ):
            group += f"{NAME}:x:{gid}:\n"
        return passwd, group


def _member(archive: bytes | None) -> str:
    if not archive:
        return ""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                handle = tar.extractfile(member)
                if handle is not None:
                    return handle.read(1024**2).decode("utf-8", errors="replace")
    return ""


class AccountsOfImages:
    """Each image's accounts, read through the engine and kept ``KEEP_SECONDS``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._known: dict[str, tuple[float, Accounts]] = {}
        self._reading: dict[str, threading.Lock] = {}  # one per image
        self._lock = threading.Lock()

    def of(self, image: str) -> Accounts:
        """One read per image at a time: the jobs that start together wait for it and
        then go on in the order they came (a read each would let them overtake)."""
        with self._lock:
            reading = self._reading.setdefault(image, threading.Lock())
        with reading:
            with self._lock:
                kept = self._known.get(image)
            if kept is not None and time.monotonic() - kept[0] < KEEP_SECONDS:
                return kept[1]
            try:
                accounts = self._read(image)
            except ImageNotFound:  # the job's own create says so, with its reason; not kept
                return Accounts("", "")
            with self._lock:
                self._known[image] = (time.monotonic(), accounts)
            return accounts

    def _read(self, image: str) -> Accounts:
        name = f"appliance-accounts-{uuid.uuid4().hex[:12]}"
        body: dict[str, Any] = {"Image": image, "Entrypoint": ["/nonexistent"], "Cmd": [],
                                "NetworkDisabled": True, "HostConfig": {"NetworkMode": "none"}}  # fmt: skip
        made = self.engine.create(name, body)
        try:
            return Accounts(_member(self.engine.archive(made, "/etc/passwd")),
                            _member(self.engine.archive(made, "/etc/group")))  # fmt: skip
        finally:
            with contextlib.suppress(EngineError):  # never started: a leftover harms nothing
                self.engine.remove(made)


@dataclass(frozen=True)
class Identity:
    """Whose a container is: its work directory here and on the engine's host, its
    user, and the environment variables its step sets itself."""

    workdir: str
    engine_workdir: str
    owner: tuple[int, int] | None
    env: tuple[str, ...]


def add_named_user(options: dict[str, Any], accounts: AccountsOfImages | None,
                   image: str) -> dict[str, Any]:  # fmt: skip
    """A container's options (containers.py) as the engine takes them: ``identity`` out,
    and with ``accounts``, the mounts and environment that name the user if its image
    does not (read only now, when the container is made: jobs waiting for a slot keep
    their order)."""
    options = dict(options)
    identity = options.pop("identity", None)
    if accounts is None or not isinstance(identity, Identity):
        return options
    try:
        mounts, env = named_user(accounts.of(image), identity.owner, Path(identity.workdir),
                                 identity.engine_workdir, identity.env)  # fmt: skip
    except OSError as exc:  # a full volume, say: the job runs, without a name
        log.warning("could not name the user of %s's container: %s", identity.workdir, exc)
        return options
    if mounts:
        options["mounts"] = [*(options.get("mounts") or []), *mounts]
        options["environment"] = {**dict(options.get("environment") or {}), **env}
    return options


def named_user(accounts: Accounts, owner: tuple[int, int] | None, workdir: Path,
               engine_workdir: str, env: Collection[str]) -> tuple[list[dict[str, Any]], dict[str, str]]:  # fmt: skip
    """The mounts and the environment that give the job's user a name and a home, if its
    image lacks them (the files are written beside the job's directory, where the job
    cannot change them)."""
    if owner is None or accounts.knows(owner[0]):
        return [], {}
    passwd, group = accounts.with_user(*owner)
    folder = Path(record_dir(workdir))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "passwd").write_text(passwd)
    (folder / "group").write_text(group)
    source = record_dir(engine_workdir)
    mounts = [{"Target": f"/etc/{name}", "Source": f"{source}/{name}", "Type": "bind",
               "ReadOnly": True} for name in ("passwd", "group")]  # fmt: skip
    added = {key: value for key, value in (("USER", NAME), ("HOME", HOME)) if key not in env}
    return mounts, added
