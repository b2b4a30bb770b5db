"""Job states (the previous system's names) and their transitions.

This is the one place that knows which state may follow which; how an exit code becomes
a final state is ``appliance.exits.job_end``.
"""

from __future__ import annotations

import enum


class JobState(enum.StrEnum):
    PENDING = "PENDING"
    REJECTED = "REJECTED"
    ACCEPTED = "ACCEPTED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    INTERRUPTED = "INTERRUPTED"
    DELETED = "DELETED"
    FAILED = "FAILED"
    ERROR = "ERROR"
    UNKNOWN = "UNKNOWN"
    CANCELLING = "CANCELLING"

    @property
    def finished(self) -> bool:
        return self in FINAL


FINAL = frozenset({
    JobState.REJECTED, JobState.COMPLETED, JobState.INTERRUPTED,
    JobState.DELETED, JobState.FAILED, JobState.ERROR,
})  # fmt: skip

_ENDINGS = {JobState.COMPLETED, JobState.FAILED, JobState.ERROR, JobState.INTERRUPTED}

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.ACCEPTED, JobState.REJECTED, JobState.DELETED}),
    JobState.ACCEPTED: frozenset(
        {
            JobState.QUEUED,
            JobState.RUNNING,
            JobState.REJECTED,
            JobState.CANCELLING,
            JobState.DELETED,
            *_ENDINGS,
        }
    ),
    JobState.QUEUED: frozenset(
        {JobState.RUNNING, JobState.CANCELLING, JobState.UNKNOWN, *_ENDINGS}
    ),
    JobState.RUNNING: frozenset({JobState.CANCELLING, JobState.UNKNOWN, *_ENDINGS}),
    JobState.UNKNOWN: frozenset(
        {JobState.QUEUED, JobState.RUNNING, JobState.CANCELLING, *_ENDINGS}
    ),
    JobState.CANCELLING: frozenset({JobState.DELETED, *_ENDINGS}),
}


def can_move(current: JobState, new: JobState) -> bool:
    return new in TRANSITIONS.get(current, frozenset())


def sources_of(new: JobState) -> list[JobState]:
    """Every state from which ``new`` may be reached (for compare-and-set updates)."""
    return [state for state, targets in TRANSITIONS.items() if new in targets]
