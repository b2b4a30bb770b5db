"""What a scheduler knows of each job it follows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from appliance.model import Service
from appliance.states import JobState


@dataclass
class Held:
    """A job this scheduler started or adopted, and follows until it ends."""

    job_id: str
    service: Service | None
    runner: str
    handle: str
    state: JobState
    started_at: datetime | None = None
    time_limit: float | None = None
    staged: set[str] = field(default_factory=set)
    cancel_first: float | None = None  # when the first stop was sent
    cancel_sent: float | None = None  # when the last stop was sent
    timed_out: bool = False
    unreachable_since: float | None = None
