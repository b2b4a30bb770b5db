"""Containers as the docker backend sees them, over ``engine.Engine``.

A ``Container`` is what the engine said of it last (its list entry, or its inspection),
with the few actions the backend takes on it. Nothing is asked again that is known:
a created container's id, name and labels; a listed container's state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from appliance import safefs
from appliance.errors import RunnerError
from appliance.runners.docker.engine import STDERR, Conflict, Engine, ImageNotFound, NotFound
from appliance.units import parse_size

__all__ = [
    "STDERR",
    "Container",
    "body",
    "create",
    "create_or_get",
    "exit_of",
    "keep_output",
    "listed",
]


@dataclass
class Container:
    engine: Engine
    attrs: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.attrs["Id"])

    @property
    def name(self) -> str:
        name = self.attrs.get("Name") or (self.attrs.get("Names") or [""])[0]
        return str(name).lstrip("/")

    @property
    def status(self) -> str:
        state = self.attrs.get("State")
        return str(state.get("Status") if isinstance(state, dict) else state)

    @property
    def labels(self) -> dict[str, str]:
        config = self.attrs.get("Config")
        labels = config.get("Labels") if isinstance(config, dict) else self.attrs.get("Labels")
        return dict(labels or {})

    def reload(self) -> None:
        self.attrs = self.engine.inspect(self.id)

    def start(self) -> None:
        self.engine.start(self.id)

    def stop(self, timeout: int) -> None:
        self.engine.stop(self.id, timeout)

    def remove(self) -> None:
        self.engine.remove(self.id)

    def output(self, **params: Any) -> bytes:
        """Its output so far (both streams unless ``params`` say otherwise), joined."""
        return b"".join(chunk for _, chunk in self.engine.logs(self.id, **params))


def body(image: str, options: dict[str, Any]) -> dict[str, Any]:
    """The engine's create request for a job's container options (containers.py:
    docker-py's names for them, which a waiting job keeps in its record)."""
    host: dict[str, Any] = {
        "Mounts": options.get("mounts") or [],
        "NetworkMode": options.get("network_mode") or "none",
        "CapDrop": options.get("cap_drop"),
        "CapAdd": options.get("cap_add"),
        "SecurityOpt": options.get("security_opt"),
        "ReadonlyRootfs": bool(options.get("read_only")),
        "Tmpfs": options.get("tmpfs") or None,
        "Init": options.get("init"),
        "CgroupnsMode": options.get("cgroupns"),
    }
    if log_config := options.get("log_config"):
        host["LogConfig"] = {"Type": log_config.get("type"), "Config": log_config.get("config")}
    for option, field in (("mem_limit", "Memory"), ("memswap_limit", "MemorySwap")):
        if options.get(option) is not None:
            host[field] = parse_size(options[option])
    if options.get("nano_cpus") is not None:
        host["NanoCpus"] = int(options["nano_cpus"])
    if options.get("pids_limit") is not None:
        host["PidsLimit"] = int(options["pids_limit"])
    environment = options.get("environment") or {}
    if isinstance(environment, dict):
        environment = [f"{key}={value}" for key, value in environment.items()]
    config: dict[str, Any] = {
        "Image": image,
        "Entrypoint": options.get("entrypoint"),
        "Cmd": options.get("command"),
        "WorkingDir": options.get("working_dir"),
        "Env": environment,
        "Labels": dict(options.get("labels") or {}),
        "User": options.get("user") or "",
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
        "Tty": False, "OpenStdin": False, "StdinOnce": False,
        "HostConfig": {key: value for key, value in host.items() if value is not None},
    }  # fmt: skip
    return {key: value for key, value in config.items() if value is not None}


def create(engine: Engine, image: str, options: dict[str, Any]) -> Container:
    """Create the container; its model without asking the engine about it again."""
    name = str(options["name"])
    made = engine.create(name, body(image, options))
    return Container(engine, {
        "Id": made, "Name": f"/{name}", "State": {"Status": "created"},
        "Config": {"Labels": dict(options.get("labels") or {})},
    })  # fmt: skip


def create_or_get(engine: Engine, options: dict[str, Any]) -> Container:
    """Create the container of ``options`` (with its ``image``), or find it: created
    before, by us or by an earlier run of the same job."""
    options = dict(options)
    image = str(options.pop("image"))
    try:
        return create(engine, image, options)
    except ImageNotFound:
        raise RunnerError(
            f"image {image} is not available to the Docker engine: build or pull it"
        ) from None
    except Conflict:
        try:  # submitted before: the same job, the same container
            return get(engine, options["name"])
        except NotFound:  # unless it is just gone
            return create(engine, image, options)


def keep_output(container: Container, workdir: Path, stdout: str, stderr: str) -> None:
    """A finished container's two streams into the job's files (never through what the
    job left there: appliance.safefs)."""
    with safefs.create(workdir, stdout) as out, safefs.create(workdir, stderr) as err:
        for stream, chunk in container.engine.logs(container.id):
            (err if stream == STDERR else out).write(chunk)


def get(engine: Engine, name: str) -> Container:
    return Container(engine, engine.inspect(name))


def listed(engine: Engine, label: str) -> list[Container]:
    """The containers with this label, as the engine's list gives them."""
    return [Container(engine, attrs) for attrs in engine.list(label)]


OOM_SETTLE = 2.0  # seconds an exit 137 waits for the engine's word on memory


def _state(container: Container) -> dict[str, Any]:
    state = container.attrs.get("State")
    if not isinstance(state, dict):  # from the list: only "exited", and the code was 0
        return {"ExitCode": 0}
    return state


ENGINE_LOST = (
    "the Docker engine stopped while the job ran and lost it (exit code 255 is the "
    "engine's, not the tool's): was the engine restarted?"
)


def _instant(value: Any) -> float | None:
    """A time the engine gives (RFC 3339, nanoseconds), in seconds; None if unset."""
    try:
        instant = datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None
    return instant if instant > 0 else None  # "0001-01-01T00:00:00Z": never


def lost_by_engine(state: dict[str, Any], engine_lost_at: float | None) -> bool:
    """Whether an exit 255 is the engine's word for a container it lost while it was
    down (what it reports on restart), not the tool's own: the container started before
    the engine went away and was not seen to end before then."""
    if state.get("ExitCode") != 255 or state.get("Error") or engine_lost_at is None:
        return False
    started, finished = _instant(state.get("StartedAt")), _instant(state.get("FinishedAt"))
    return (
        started is not None and started < engine_lost_at
        and (finished is None or finished >= engine_lost_at)
    )  # fmt: skip


def exit_of(container: Container, engine_lost_at: float | None = None) -> tuple[int, bool, str]:
    """An ended container's exit code, whether it ran out of memory, and why it failed.

    A container from the engine's list says only "Exited (N)": unless N is 0, it is
    inspected to learn why (out of memory, an engine error, ...). ``engine_lost_at``:
    when this process last lost the engine (its event stream broke), if ever.
    """
    if not isinstance(container.attrs.get("State"), dict) and not str(
        container.attrs.get("Status", "")
    ).startswith("Exited (0)"):
        container.reload()
    state = _state(container)
    # Killed (137) but not marked out of memory: the engine may learn of the kernel's OOM
    # kill just after the exit (containerd sends the two events apart; seen in CI under
    # load), so it is asked again for a moment before the kill counts as from outside.
    deadline = time.monotonic() + OOM_SETTLE
    while (
        state.get("ExitCode") == 137 and not state.get("OOMKilled") and time.monotonic() < deadline
    ):
        time.sleep(0.25)
        container.reload()
        state = _state(container)
    oom = bool(state.get("OOMKilled"))
    message = "the job ran out of memory and was killed" if oom else str(state.get("Error") or "")
    if lost_by_engine(state, engine_lost_at):
        message = ENGINE_LOST
    return int(state.get("ExitCode", -1)), oom, message
