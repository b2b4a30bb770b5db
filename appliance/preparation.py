"""Turning an accepted job into what a runner needs: a pure step, with no I/O.

Either the job can be run (``Prepared``: the runner it goes to and its ``JobSpec``), or it
cannot (``Refused``: the state it ends in, and why).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.catalogue import Catalogue
from appliance.commandline import build_command
from appliance.errors import CommandError
from appliance.forms import load_values
from appliance.runners.base import JobSpec, StagedInput
from appliance.selection import Selector, choose_runner
from appliance.states import JobState


@dataclass(frozen=True)
class Prepared:
    runner: str
    backend: str
    spec: JobSpec


@dataclass(frozen=True)
class Refused:
    state: JobState
    reason: str


def prepare(
    job: Mapping[str, Any],
    catalogue: Catalogue,
    selectors: Mapping[str, Selector],
    environ: Mapping[str, str],
    workdir: Path,
) -> Prepared | Refused:
    service = catalogue.services.get(str(job.get("service")))
    if service is None:
        return Refused(JobState.ERROR, f"service {job.get('service')!r} no longer exists")
    values = load_values(dict(job.get("values") or {}))
    try:
        choice = choose_runner(service, values, selectors.get(service.id))
    except Exception as exc:  # a selector is the service author's code
        return Refused(JobState.ERROR, f"the runner selector failed: {exc}")
    if choice is None:
        return Refused(JobState.REJECTED, "no runner accepts these values")
    config = catalogue.runners.get(choice.runner)
    if config is None:
        return Refused(JobState.ERROR, f"runner {choice.runner!r} is not configured")
    try:
        plan = build_command(service, values, environ, choice)
    except CommandError as exc:
        return Refused(JobState.ERROR, str(exc))
    spec = JobSpec(
        job_id=str(job["_id"]),
        service_id=service.id,
        argv=plan.argv,
        workdir=workdir,
        env=plan.env,
        inputs=tuple(StagedInput(f.source, f.path) for f in plan.files),
        image=service.image,
        resources=service.resources.over(config.limits),
        submitted_at=submitted_timestamp(job),
    )
    return Prepared(choice.runner, config.backend, spec)


def submitted_timestamp(job: Mapping[str, Any]) -> float:
    """The job's submission time as unix seconds (0 when the record has none)."""
    at = job.get("submitted_at")
    if not isinstance(at, datetime):
        return 0.0
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
