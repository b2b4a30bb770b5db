"""The runner interface: what every backend implements, and what it is given.

A backend is configured once at start-up (one per runner configuration) and is shared by
every job that uses it. It is given a ``StepRun``: the job's stored plan and which step
to run (a backend whose declaration says ``runs_steps`` runs them all, from that one).
It maps the plan's locations to what it can reach (``appliance.volumes``), runs the
step, keeps the step's stdout and stderr at the paths the step names and records its end
with ``appliance.exits.write_exit_record``. Handles are strings the backend makes from
the job id and the step, so a repeated submit finds the same run, and a job records its
handle so that any scheduler can find it again after a restart.

Optional abilities are Protocols checked with ``isinstance``: ``Notifying`` (change
notices), ``Adopting`` (told the plan of each adopted job), ``OrphanRemover`` (cleans up what belongs to no active job), ``Probing``
(whether its engine answers and has an image; used by ``appliance check``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from appliance.exits import ExitRecord
from appliance.plan import Plan, Step

# The name and home a job's user has where its image does not know its uid (workflow
# images rarely know uid 1000, and Snakemake, Java and others ask for the user's name):
# the environment of every step, unless the step sets them itself.
JOB_USER = "appliance"
JOB_HOME = "/tmp"


def with_identity(env: dict[str, str]) -> dict[str, str]:
    """``env`` with ``USER`` and ``HOME`` added where it does not set them."""
    return {"USER": JOB_USER, "HOME": JOB_HOME} | env


class RunState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    LOST = "lost"  # the backend has no trace of the job


@dataclass(frozen=True)
class RunStatus:
    state: RunState
    exit_code: int | None = None
    message: str = ""  # how it ended (FINISHED, LOST), or why it waits (QUEUED)
    oom: bool = False
    reason: str = ""  # QUEUED: why it waits, a code of appliance.waiting (slot, backend...)

    def record(self) -> ExitRecord | None:
        """How it ended (FINISHED only)."""
        if self.state is not RunState.FINISHED:
            return None
        code = -1 if self.exit_code is None else self.exit_code
        return ExitRecord(code, self.message, self.oom)


@dataclass(frozen=True)
class StepRun:
    """One step of a job's plan, to run (``step``: its index in ``plan.steps``)."""

    job_id: str
    plan: Plan
    step: int = 0
    service_id: str = ""  # for labels and logs only
    submitted_at: float = 0.0  # unix time; runners that queue jobs start older ones first
    # True when an earlier holder of the job may have submitted this step already (it was
    # claimed before, or it is a later step): a backend that cannot tell a submission
    # apart by itself looks for that run first
    resumed: bool = False

    @property
    def current(self) -> Step:
        return self.plan.steps[self.step]

    def handle_suffix(self) -> str:
        """What a backend appends to the job id to name this step's run."""
        return "" if self.step == 0 else f"-{self.step}"


class Backend(Protocol):
    async def submit(self, run: StepRun) -> str:
        """Start the step; returns its handle. RunnerUnavailableError: try again later;
        RunnerError: it can never run (the job ends in ERROR)."""

    async def status(self, handles: Sequence[str]) -> dict[str, RunStatus]:
        """The status of many runs at once (one entry per handle asked for)."""

    async def cancel(self, handle: str) -> None:
        """Stop the run: SIGTERM, then SIGKILL after a grace period. Idempotent."""

    async def close(self) -> None:
        """Release connections; running jobs go on."""


@runtime_checkable
class Notifying(Protocol):
    """A backend that can tell when its jobs may have changed (one started or ended), so
    that the scheduler asks for their status at once instead of at its next poll."""

    async def changed(self, timeout: float) -> None:
        """Return when a job may have changed, or after ``timeout`` seconds anyway."""


@runtime_checkable
class Adopting(Protocol):
    """A backend that keeps jobs of its own across processes (docker's jobs waiting for a
    slot): a scheduler that adopts a job gives it the job's step before asking its
    status, and the backend makes what it runs from that stored plan, never from a file
    it left behind."""

    def adopt(self, run: StepRun) -> None:
        """``run``'s job was started by an earlier scheduler; its status is asked next."""


@runtime_checkable
class OrphanRemover(Protocol):
    """A backend that leaves things behind (containers) and can remove those of jobs that
    are no longer active."""

    async def remove_orphans(self, active_jobs: set[str]) -> list[str]:
        """Remove what belongs to none of ``active_jobs``; returns what was removed."""


@runtime_checkable
class ImageIdentity(Protocol):
    """A backend that can say which exact image a name stands for (reuse of identical
    results compares images by this, never by name: ``appliance.scheduler.reuse``)."""

    async def image_id(self, image: str) -> str | None:
        """The image's content id (``sha256:...``); None if the engine lacks it."""


@runtime_checkable
class ImageWatching(Protocol):
    """A backend whose engine tells when its images change (a tag moved to a rebuilt
    image): the scheduler then asks what they are at once (``appliance.scheduler.images``)."""

    async def images_changed(self, timeout: float) -> None:
        """Return when an image changed, or after ``timeout`` seconds."""


@runtime_checkable
class Probing(Protocol):
    """A backend that can say whether its engine answers and which images it lacks."""

    async def probe(self) -> str:
        """A line about the engine (e.g. its version); RunnerError if it does not answer."""

    async def missing_images(self, images: Sequence[str]) -> list[str]:
        """Those of ``images`` that the engine does not have."""
