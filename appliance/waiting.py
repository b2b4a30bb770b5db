"""Why a job that is not running waits: a reason code, words, and when it began.

Every job that is not running and not final carries one (the ``waiting`` field of its
record), written in the same write that moves it, so it costs no extra command except
when a runner's own reason changes. The API shows it as ``waiting`` (docs/api.md), the
job page and ``appliance watch`` in words, TES in the task's system logs.

    code          meaning
    scheduler     recorded; no scheduler has taken it yet (it is claimable: one takes it
                  at once when woken, at its next sweep otherwise)
    no-scheduler  no live scheduler runs its runner (it ends in ERROR if none starts)
    starting      a scheduler took it: its folder is being made, it is being submitted
    staging       its inputs are being fetched (a TES task)
    runner        its runner's engine or worker does not answer; tried again
    files         the jobs' file system does not answer; tried again
    queued        submitted to its runner, which has said nothing more yet
    slot          waiting for one of its runner's slots
    image         its image is being pulled
    backend       the runner's own reason (SLURM's pending reason, a pod's scheduling)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

REASONS = {
    "scheduler": "waiting for a scheduler to take it",
    "no-scheduler": "no running scheduler runs its runner",
    "starting": "a scheduler took it and is starting it",
    "staging": "its inputs are being fetched",
    "runner": "its runner does not answer; trying again",
    "files": "the jobs' file system does not answer; trying again",
    "queued": "submitted to its runner, waiting for it to start",
    "slot": "waiting for a free slot on its runner",
    "image": "its image is being pulled",
    "backend": "waiting in its runner's queue",
}


def waiting(reason: str, since: datetime, message: str = "") -> dict[str, Any]:
    """The ``waiting`` field of a job's record."""
    if reason not in REASONS:
        raise ValueError(f"unknown waiting reason {reason!r}")
    return {"reason": reason, "message": message or REASONS[reason], "since": since}


def same(current: Any, reason: str, message: str) -> bool:
    """Whether a stored ``waiting`` already says this (then it is not written again)."""
    return (isinstance(current, dict) and current.get("reason") == reason
            and current.get("message") == (message or REASONS.get(reason, "")))  # fmt: skip
