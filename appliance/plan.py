"""A job's run plan: what to run, where, with which files and limits, for any backend.

The plan is made once, when the job is submitted, and stored with the job: editing or
removing a service file never changes a job that is already queued. It holds no path of
the machine that made it. Every place is a ``Location``: the name of a volume (``jobs``
or ``uploads``) and a relative path inside it, checked when the location is made. Each
backend maps volumes to what it can reach (the docker backend to host paths for the
engine, the local pool to its own roots, a cluster backend to claims or shared file
systems); see ``appliance.volumes``.

    Plan
    ├── work       Location          the job's directory (jobs/<job id>); steps run in it
    ├── steps      Step, ...         run in order; each: argv, image, env, stdout/stderr,
    │                                and whether its failure stops the rest
    ├── inputs     Input, ...        a file at a Location, seen by the steps at a path
    │                                relative to the work directory (read-only)
    ├── outputs    OutputPattern, ...  which files in the work directory are results
    ├── resources  Resources         the limits, already merged with the runner's defaults
    ├── mounts     Mount, ...        more of the work directory at container paths (TES tasks)
    ├── stage_in   Transfer, ...     files the scheduler fetches in before the first step
    └── stage_out  Transfer, ...     files it sends out after the last one ended well

A step may also name its container working directory (``workdir``, default the work
directory's own mount point) and a file of the work directory as its standard input.

It is stored as JSON text (``Plan.stored``), one string field of the job's document:
FerretDB decodes and re-encodes every field of a document at each read and write of it,
and a job is written five times or more; as text the plan costs it a quarter to a third
less per command. A plan stored as a nested document (before 2026-12) is read the same.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from appliance.model import Resources

JOBS = "jobs"
UPLOADS = "uploads"
VOLUMES = (JOBS, UPLOADS)


class PlanError(ValueError):
    """A plan (or a stored plan) is not well formed."""


def clean_relative(path: str, what: str = "path") -> str:
    """``path`` as a normal relative POSIX path that stays inside its base, or PlanError."""
    if not isinstance(path, str) or not path or "\x00" in path or "\\" in path:
        raise PlanError(f"{what} {path!r} is not a relative path")
    if path.startswith("/"):
        raise PlanError(f"{what} {path!r} is absolute")
    parts = path.split("/")
    if any(part in ("..", ".") for part in parts) or "" in parts[:-1]:
        raise PlanError(f"{what} {path!r} must not contain '.', '..' or '//'")
    normal = posixpath.normpath(path)
    if normal in (".", "") or normal.startswith("../"):
        raise PlanError(f"{what} {path!r} leaves its base")
    return normal


@dataclass(frozen=True)
class Location:
    """A place on one of the appliance's volumes: never an absolute path of a machine."""

    volume: str
    path: str

    def __post_init__(self) -> None:
        if self.volume not in VOLUMES:
            raise PlanError(f"unknown volume {self.volume!r} (known: {', '.join(VOLUMES)})")
        object.__setattr__(self, "path", clean_relative(self.path, f"{self.volume} path"))

    def child(self, relative: str) -> Location:
        return Location(self.volume, f"{self.path}/{clean_relative(relative)}")

    def within(self, other: Location) -> bool:
        """True if this location is ``other`` or lies below it."""
        return self.volume == other.volume and (
            self.path == other.path or self.path.startswith(other.path + "/")
        )

    def to_json(self) -> dict[str, str]:
        return {"volume": self.volume, "path": self.path}

    @classmethod
    def from_json(cls, data: Any) -> Location:
        if not isinstance(data, Mapping):
            raise PlanError(f"a location must be a mapping, got {data!r}")
        return cls(str(data.get("volume")), str(data.get("path")))

    def __str__(self) -> str:
        return f"{self.volume}:{self.path}"


def job_location(job_id: str) -> Location:
    return Location(JOBS, job_id)


@dataclass(frozen=True)
class Input:
    """A file the steps read: ``source`` seen read-only at ``path`` in the work directory."""

    source: Location
    path: str
    parameter: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", clean_relative(self.path, "input path"))

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source.to_json(), "path": self.path, "parameter": self.parameter}

    @classmethod
    def from_json(cls, data: Any) -> Input:
        return cls(Location.from_json(data["source"]), str(data["path"]),
                   str(data.get("parameter", "")))  # fmt: skip


def clean_absolute(path: str, what: str = "path") -> str:
    """An absolute container path, normalised, without '..'; PlanError otherwise."""
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
        raise PlanError(f"{what} {path!r} is not an absolute path")
    if ".." in path.split("/"):
        raise PlanError(f"{what} {path!r} must not contain '..'")
    normal = posixpath.normpath(path)
    return "/" + normal.lstrip("/")


@dataclass(frozen=True)
class Step:
    """One program run. ``stdout``/``stderr`` are paths in the work directory where its
    output is kept; ``stop_on_failure`` False lets the next step run after a failure;
    ``workdir`` is its container working directory (None: the work directory's mount);
    ``stdin`` a file of the work directory given as its standard input."""

    argv: tuple[str, ...]
    image: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    stdout: str = "stdout"
    stderr: str = "stderr"
    stop_on_failure: bool = True
    workdir: str | None = None
    stdin: str | None = None

    def __post_init__(self) -> None:
        if not self.argv or not all(isinstance(a, str) for a in self.argv):
            raise PlanError("a step needs a program to run")
        object.__setattr__(self, "stdout", clean_relative(self.stdout, "stdout path"))
        object.__setattr__(self, "stderr", clean_relative(self.stderr, "stderr path"))
        if self.workdir is not None:
            object.__setattr__(self, "workdir", clean_absolute(self.workdir, "workdir"))
        if self.stdin is not None:
            object.__setattr__(self, "stdin", clean_relative(self.stdin, "stdin path"))

    def to_json(self) -> dict[str, Any]:
        data = {"argv": list(self.argv), "image": self.image, "env": dict(self.env),
                "stdout": self.stdout, "stderr": self.stderr,
                "stop_on_failure": self.stop_on_failure}  # fmt: skip
        if self.workdir is not None:
            data["workdir"] = self.workdir
        if self.stdin is not None:
            data["stdin"] = self.stdin
        return data

    @classmethod
    def from_json(cls, data: Any) -> Step:
        return cls(
            tuple(str(a) for a in data["argv"]),
            None if data.get("image") is None else str(data["image"]),
            {str(k): str(v) for k, v in dict(data.get("env") or {}).items()},
            str(data.get("stdout", "stdout")),
            str(data.get("stderr", "stderr")),
            bool(data.get("stop_on_failure", True)),
            None if data.get("workdir") is None else str(data["workdir"]),
            None if data.get("stdin") is None else str(data["stdin"]),
        )


@dataclass(frozen=True)
class Mount:
    """A directory of the work directory (``source``, relative) seen by every step at the
    container path ``target``."""

    target: str
    source: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", clean_absolute(self.target, "mount path"))
        object.__setattr__(self, "source", clean_relative(self.source, "mount source"))
        if self.target == "/":
            raise PlanError("cannot mount over the container's root")

    def to_json(self) -> dict[str, str]:
        return {"target": self.target, "source": self.source}

    @classmethod
    def from_json(cls, data: Any) -> Mount:
        return cls(str(data["target"]), str(data["source"]))


@dataclass(frozen=True)
class Transfer:
    """A file (or directory) moved by the scheduler, not by a step: ``url`` (or inline
    ``content``) to or from ``path`` in the work directory. ``prefix`` marks an output
    whose ``path`` is a wildcard and whose files go under ``url`` by their path after
    ``prefix``; ``container_path`` is what the task calls it (for its logs)."""

    path: str
    url: str = ""
    content: str | None = None
    directory: bool = False
    prefix: str | None = None
    container_path: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", clean_relative(self.path, "transfer path"))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path, "url": self.url, "directory": self.directory,
                                "container_path": self.container_path}  # fmt: skip
        if self.content is not None:
            data["content"] = self.content
        if self.prefix is not None:
            data["prefix"] = self.prefix
        return data

    @classmethod
    def from_json(cls, data: Any) -> Transfer:
        return cls(str(data["path"]), str(data.get("url", "")), data.get("content"),
                   bool(data.get("directory", False)), data.get("prefix"),
                   str(data.get("container_path", "")))  # fmt: skip


@dataclass(frozen=True)
class OutputPattern:
    """Files of the work directory that are results: a glob, with the API's id and type."""

    id: str
    path: str
    name: str = ""
    media_type: str = ""

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "path": self.path, "name": self.name, "media_type": self.media_type}

    @classmethod
    def from_json(cls, data: Any) -> OutputPattern:
        return cls(str(data["id"]), str(data["path"]), str(data.get("name", "")),
                   str(data.get("media_type", "")))  # fmt: skip


RESOURCE_FIELDS = tuple(Resources.__dataclass_fields__)


def resources_to_json(resources: Resources) -> dict[str, Any]:
    data = {name: getattr(resources, name) for name in RESOURCE_FIELDS}
    if data["capabilities"] is not None:
        data["capabilities"] = list(data["capabilities"])
    return {k: v for k, v in data.items() if v is not None}


def resources_from_json(data: Any) -> Resources:
    values = {k: v for k, v in dict(data or {}).items() if k in RESOURCE_FIELDS}
    if values.get("capabilities") is not None:
        values["capabilities"] = tuple(values["capabilities"])
    return Resources(**values)


@dataclass(frozen=True)
class Plan:
    work: Location
    steps: tuple[Step, ...]
    inputs: tuple[Input, ...] = ()
    outputs: tuple[OutputPattern, ...] = ()
    resources: Resources = field(default_factory=Resources)
    mounts: tuple[Mount, ...] = ()
    stage_in: tuple[Transfer, ...] = ()
    stage_out: tuple[Transfer, ...] = ()

    def __post_init__(self) -> None:
        if not self.steps:
            raise PlanError("a plan needs at least one step")
        if self.work.volume != JOBS:
            raise PlanError(f"the work location must be on the jobs volume, not {self.work}")
        seen: set[str] = set()
        for item in self.inputs:
            if item.path in seen:
                raise PlanError(f"two inputs are staged at {item.path!r}")
            seen.add(item.path)

    @property
    def time_limit(self) -> float | None:
        return self.resources.time_limit

    def sources(self) -> list[Location]:
        """Every location the plan reads from outside its own work directory."""
        return [i.source for i in self.inputs]

    def to_json(self) -> dict[str, Any]:
        return {
            "work": self.work.to_json(),
            "steps": [s.to_json() for s in self.steps],
            "inputs": [i.to_json() for i in self.inputs],
            "outputs": [o.to_json() for o in self.outputs],
            "resources": resources_to_json(self.resources),
            **({"mounts": [m.to_json() for m in self.mounts]} if self.mounts else {}),
            **({"stage_in": [t.to_json() for t in self.stage_in]} if self.stage_in else {}),
            **({"stage_out": [t.to_json() for t in self.stage_out]} if self.stage_out else {}),
        }

    def stored(self) -> str:
        """The plan as the job's document keeps it: compact JSON text."""
        return json.dumps(self.to_json(), separators=(",", ":"))

    @classmethod
    def from_json(cls, data: Any) -> Plan:
        """A stored plan (its text or its mapping); PlanError if it is damaged (it is
        checked again, in full)."""
        data = plan_mapping(data)
        if not data:
            raise PlanError("the stored plan is not a mapping")
        try:
            return cls(
                Location.from_json(data["work"]),
                tuple(Step.from_json(s) for s in data["steps"]),
                tuple(Input.from_json(i) for i in data.get("inputs") or ()),
                tuple(OutputPattern.from_json(o) for o in data.get("outputs") or ()),
                resources_from_json(data.get("resources")),
                tuple(Mount.from_json(m) for m in data.get("mounts") or ()),
                tuple(Transfer.from_json(t) for t in data.get("stage_in") or ()),
                tuple(Transfer.from_json(t) for t in data.get("stage_out") or ()),
            )
        except (KeyError, TypeError) as exc:
            raise PlanError(f"the stored plan is damaged: {exc!r}") from None


def plan_mapping(stored: Any) -> dict[str, Any]:
    """A stored plan as a mapping, whether kept as text or as a document; empty when it
    is neither (or is damaged): for what only shows parts of it."""
    if isinstance(stored, str):
        try:
            stored = json.loads(stored)
        except ValueError:
            return {}
    return dict(stored) if isinstance(stored, Mapping) else {}
