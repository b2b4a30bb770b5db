"""Making a job's plan at submission: a pure step (the selector aside), with no I/O.

The web process plans each job once, when it is submitted: it chooses the runner (the
service's ``default``, or the one its selector names), builds the command line
(environment variables of this process first, then the values; see
``appliance.commandline``), turns file values into locations on the volumes, merges the
service's resources over the runner's limits, and copies the service's outputs. The plan
is stored with the job, so later edits of the service file change nothing for it.
Either the job can be run (``Planned``) or it cannot (``Refused``: the state it is
recorded in at once, and why).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.commandline import build_command
from appliance.errors import CommandError, ConfigError
from appliance.model import Service
from appliance.plan import Input, OutputPattern, Plan, PlanError, Step, job_location
from appliance.runners.config import RunnerConfig
from appliance.selection import Selector, choose_runner, load_selector
from appliance.states import JobState


@dataclass(frozen=True)
class Planned:
    runner: str
    backend: str
    plan: Plan


@dataclass(frozen=True)
class Refused:
    state: JobState
    reason: str


def plan_job(
    job_id: str,
    service: Service,
    values: Mapping[str, Any],
    environ: Mapping[str, str],
    runners: Mapping[str, RunnerConfig],
    selector: Selector | None = None,
) -> Planned | Refused:
    try:
        choice = choose_runner(service, dict(values), selector)
    except Exception as exc:  # a selector is the service author's code
        return Refused(JobState.ERROR, f"the runner selector failed: {exc}")
    if choice is None:
        return Refused(JobState.REJECTED, "no runner accepts these values")
    config = runners.get(choice.runner)
    if config is None:
        return Refused(JobState.ERROR, f"runner {choice.runner!r} is not configured")
    try:
        command = build_command(service, values, environ, choice)
    except CommandError as exc:
        return Refused(JobState.ERROR, str(exc))
    inputs = []
    for staged in command.files:
        if staged.source.location is None:
            return Refused(JobState.ERROR, f"input {staged.parameter} is not on a volume")
        inputs.append(Input(staged.source.location, staged.path, staged.parameter))
    outputs = tuple(OutputPattern(o.id, o.path, o.name, o.media_type) for o in service.outputs)
    try:
        step = Step(command.argv, service.image, command.env)
        plan = Plan(job_location(job_id), (step,), tuple(inputs), outputs,
                    service.resources.over(config.limits))  # fmt: skip
    except PlanError as exc:
        return Refused(JobState.ERROR, f"{service.id}: {exc}")
    return Planned(choice.runner, config.backend, plan)


@dataclass
class Planner:
    """What planning needs from the running process: runner configurations, selectors
    (loaded once, on first use) and the environment for ``${VAR}`` in service files."""

    runners: Mapping[str, RunnerConfig]
    environ: Mapping[str, str]
    _selectors: dict[str, Selector | ConfigError] = field(default_factory=dict)

    def selector(self, service: Service) -> Selector | None:
        if not service.selector:
            return None
        if service.id not in self._selectors:
            try:
                self._selectors[service.id] = load_selector(
                    service.selector, Path(service.source).parent
                )
            except ConfigError as exc:
                self._selectors[service.id] = exc
        found = self._selectors[service.id]
        if isinstance(found, ConfigError):
            raise found
        return found

    def plan(self, job_id: str, service: Service, values: Mapping[str, Any]) -> Planned | Refused:
        try:
            selector = self.selector(service)
        except ConfigError as exc:
            return Refused(JobState.ERROR, f"the runner selector cannot be loaded: {exc.reason}")
        return plan_job(job_id, service, values, self.environ, self.runners, selector)
