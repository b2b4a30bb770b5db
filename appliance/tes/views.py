"""A task as the TES API shows it, in the MINIMAL, BASIC and FULL views.

States map from the job's: ACCEPTED is QUEUED (INITIALIZING while its inputs are fetched),
QUEUED and RUNNING as they are (UNKNOWN, a runner out of reach for a while, shows
RUNNING: it is not an end), CANCELLING is CANCELING, COMPLETED is COMPLETE, FAILED (an
executor failed, or ran out of time or memory) is EXECUTOR_ERROR, ERROR and REJECTED (the
runner or the staging failed) are SYSTEM_ERROR, INTERRUPTED and DELETED are CANCELED. A
task is never PREEMPTED or PAUSED: engines treat those as not final.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.jobrecord import JobRecord
from appliance.plan import plan_mapping
from appliance.publictext import public_text
from appliance.safefs import open_regular
from appliance.states import JobState

TES_STATES = {
    JobState.PENDING: "QUEUED",
    JobState.ACCEPTED: "QUEUED",
    JobState.QUEUED: "QUEUED",
    JobState.RUNNING: "RUNNING",
    JobState.UNKNOWN: "RUNNING",
    JobState.CANCELLING: "CANCELING",
    JobState.COMPLETED: "COMPLETE",
    JobState.FAILED: "EXECUTOR_ERROR",
    JobState.ERROR: "SYSTEM_ERROR",
    JobState.REJECTED: "SYSTEM_ERROR",
    JobState.INTERRUPTED: "CANCELED",
    JobState.DELETED: "CANCELED",
}
JOB_STATES: dict[str, list[str]] = {}  # TES state -> the job states it stands for
for _job, _tes in TES_STATES.items():
    JOB_STATES.setdefault(_tes, []).append(str(_job))
JOB_STATES["INITIALIZING"] = [str(JobState.ACCEPTED)]
VIEWS = ("MINIMAL", "BASIC", "FULL")
TAIL = 10_000  # characters of an executor's stdout/stderr in the FULL view


def tes_state(job: JobRecord, canceling: bool = False) -> str:
    """The task's TES state; ``canceling``: its owner asked to cancel it and a scheduler
    has not yet acted (an unfinished task then shows CANCELING at once)."""
    state = JobState(job["state"])
    if canceling and not state.finished:
        return "CANCELING"
    if state is JobState.ACCEPTED and job.get("staging"):
        return "INITIALIZING"
    return TES_STATES[state]


def rfc3339(moment: Any) -> str | None:
    if not isinstance(moment, datetime):
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    text: str = moment.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def _tail(workdir: Path, relative: str) -> str:
    """The end of a step's kept output: never through a symlink, never blocked on a FIFO
    (the job's directory is the job's to write)."""
    source = open_regular(workdir, relative)
    if source is None:
        return ""
    try:
        with source:
            size = source.seek(0, 2)
            source.seek(max(0, size - TAIL))
            return source.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def executor_logs(job: JobRecord, workdir: Path | None, full: bool) -> list[dict[str, Any]]:
    """One log per executor that has started (the running one with exit code 0 so far)."""
    document = job.get("task") or {}
    executors = document.get("executors") or []
    plan_steps = plan_mapping(job.get("plan")).get("steps") or []
    logs = []
    for index, step in enumerate(job.get("steps") or []):
        if index >= len(executors):
            break
        started = step.get("started_at") or (job.get("started_at") if index == 0 else None)
        log: dict[str, Any] = {"exit_code": step.get("exit_code") or 0}
        if (when := rfc3339(started)) is not None:
            log["start_time"] = when
        if (when := rfc3339(step.get("completed_at"))) is not None:
            log["end_time"] = when
        if full and workdir is not None and index < len(plan_steps):
            log["stdout"] = _tail(workdir, str(plan_steps[index]["stdout"]))
            log["stderr"] = _tail(workdir, str(plan_steps[index]["stderr"]))
        logs.append(log)
    return logs


def task_json(
    job: JobRecord, view: str, workdir: Path | None, canceling: bool = False
) -> dict[str, Any]:
    """The task in a view: MINIMAL (id, state), BASIC (the task, its times, outputs and
    executor exit codes), FULL (with inline inputs, stdout/stderr tails, system logs)."""
    state = tes_state(job, canceling)
    if view == "MINIMAL":
        return {"id": job["_id"], "state": state}
    document = dict(job.get("task") or {})
    full = view == "FULL"
    inputs = [dict(i) for i in document.get("inputs") or []]
    if not full:
        for item in inputs:
            item.pop("content", None)
    task: dict[str, Any] = {"id": job["_id"], "state": state, **{k: v for k, v in {
        "name": document.get("name"), "description": document.get("description"),
        "inputs": inputs, "outputs": document.get("outputs"),
        "resources": document.get("resources"), "executors": document.get("executors"),
        "volumes": document.get("volumes"), "tags": document.get("tags")}.items() if v}}  # fmt: skip
    task["creation_time"] = rfc3339(job.get("submitted_at"))
    log: dict[str, Any] = {"logs": executor_logs(job, workdir, full),
                           "outputs": list(job.get("tes_outputs") or []),
                           "metadata": {"files": f"/api/jobs/{job['_id']}/files"}}  # fmt: skip
    if (when := rfc3339(job.get("started_at"))) is not None:
        log["start_time"] = when
    if (when := rfc3339(job.get("completed_at"))) is not None:
        log["end_time"] = when
    if full:
        reasons = [public_text(str(r)) or "" for r in job.get("system_logs") or []]
        found = job.get("waiting")
        if state in ("QUEUED", "INITIALIZING") and isinstance(found, dict):
            since = rfc3339(found.get("since")) or ""
            reasons.append(f"waiting since {since}: "
                           f"{public_text(str(found.get('message') or '')) or ''}")  # fmt: skip
        error = public_text(str(job.get("error") or "")) or ""
        if state == "SYSTEM_ERROR" and error and not any(r in error for r in reasons):
            reasons.append(error)  # the runner's reason, unless it only repeats a staging one
        log["system_logs"] = reasons
    task["logs"] = [log]
    return task
