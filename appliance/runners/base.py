"""The runner interface: what every backend implements, and what it is given.

A backend is configured once at start-up (one per runner configuration) and is shared by
every job that uses it. Handles are strings the backend makes; a job records its handle
so that any scheduler can find it again after a restart.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from appliance.jobwrap import EXIT_RECORD
from appliance.model import Resources


class RunState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    LOST = "lost"  # the backend has no trace of the job


@dataclass(frozen=True)
class RunStatus:
    state: RunState
    exit_code: int | None = None
    message: str = ""


@dataclass(frozen=True)
class StagedInput:
    source: Path  # where the file is, as this process sees it
    path: str  # where the job sees it, relative to its directory


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    service_id: str
    argv: tuple[str, ...]
    workdir: Path  # the job's directory, as this process sees it
    env: dict[str, str] = field(default_factory=dict)
    inputs: tuple[StagedInput, ...] = ()
    image: str | None = None
    resources: Resources = field(default_factory=Resources)
    submitted_at: float = 0.0  # unix time; runners that queue jobs start older ones first


class Backend(Protocol):
    async def submit(self, spec: JobSpec) -> str:
        """Start the job; returns its handle. RunnerUnavailableError: try again later."""

    async def status(self, handles: Sequence[str]) -> dict[str, RunStatus]:
        """The status of many jobs at once (one entry per handle asked for)."""

    async def cancel(self, handle: str) -> None:
        """Stop the job: SIGTERM, then SIGKILL after a grace period. Idempotent."""

    async def close(self) -> None:
        """Release connections; running jobs go on."""


class Notifying(Protocol):
    """A backend that can tell when its jobs may have changed (one started or ended), so
    that the scheduler asks for their status at once instead of at its next poll."""

    async def changed(self, timeout: float) -> None:
        """Return when a job may have changed, or after ``timeout`` seconds anyway."""


__all__ = ["EXIT_RECORD"]
