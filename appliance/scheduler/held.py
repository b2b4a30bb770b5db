"""What a scheduler knows of each job it follows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from appliance.jobrecord import StepRecord
from appliance.plan import Plan
from appliance.states import JobState


@dataclass
class Held:
    """A job this scheduler started or adopted, and follows until it ends."""

    job_id: str
    plan: Plan
    runner: str
    handle: str
    state: JobState
    service: str = ""
    step: int = 0  # the step running now (one-step backends run the plan a step at a time)
    steps: list[StepRecord] = field(default_factory=list)
    started_at: datetime | None = None
    submitted_at: float = 0.0
    cancel_first: float | None = None  # when the first stop was sent
    cancel_sent: float | None = None  # when the last stop was sent
    timed_out: bool = False
    unreachable_since: float | None = None
    next_step_failing_since: float | None = None  # the next step could not be submitted
    request_id: str = ""  # the submission's (appliance.logs)
    owner: str = ""  # a task's TES client (whose shared folders its file:// URLs name)
    waiting: dict[str, Any] | None = None  # why it is not running yet, as last recorded
    adopted: bool = False  # taken over from another holder (or from before a restart)
    reuse_key: str = ""  # recorded for identical jobs when it completes (scheduler.reuse)

    @property
    def log_fields(self) -> dict[str, str | None]:
        """What a log line about this job carries as fields (JSON logs)."""
        return {"job_id": self.job_id, "service": self.service or None, "runner": self.runner,
                "request_id": self.request_id or None}  # fmt: skip

    @property
    def time_limit(self) -> float | None:
        return self.plan.time_limit

    @property
    def cancelled(self) -> bool:
        """Stopped on a user's request (not for its time limit)."""
        return self.cancel_first is not None and not self.timed_out
