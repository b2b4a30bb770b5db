"""How a step's Job and pod (as the API gives them) become its status: every branch, on the
objects the cluster writes, without a cluster (the cluster tests cover the common ones live)."""

from __future__ import annotations

from typing import Any

from appliance.runners.base import RunState
from appliance.runners.kubernetes.ends import NEVER_RAN, step_status

NOW = 1_800_000_000.0


def job(condition: str | None = None, reason: str = "") -> dict[str, Any]:
    conditions = [{"type": condition, "status": "True", "reason": reason}] if condition else []
    return {"status": {"conditions": conditions}}


def pod(state: dict[str, Any] | None = None, **status: Any) -> dict[str, Any]:
    statuses = [{"image": "tool:1", "state": state}] if state is not None else []
    return {"status": {"containerStatuses": statuses, **status}}


def test_a_complete_job_succeeded_even_before_its_pod_is_seen() -> None:
    status = step_status(job("Complete"), None, NOW, 300)
    assert (status.state, status.exit_code) == (RunState.FINISHED, 0)
    ended = step_status(job("Complete"), pod({"terminated": {"exitCode": 0}}), NOW, 300)
    assert ended.exit_code == 0


def test_exit_codes_and_memory_come_from_the_pod() -> None:
    failed = step_status(
        job("Failed", "BackoffLimitExceeded"), pod({"terminated": {"exitCode": 3}}), NOW, 300
    )
    assert (failed.exit_code, failed.oom) == (3, False)
    oom = step_status(job("Failed", "BackoffLimitExceeded"),
                      pod({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}), NOW, 300)  # fmt: skip
    assert (oom.exit_code, oom.oom) == (137, True)


def test_the_deadline_is_read_from_the_job() -> None:
    status = step_status(job("Failed", "DeadlineExceeded"), None, NOW, 300)
    assert status.exit_code == 137 and "time limit" in status.message


def test_pods_that_never_run_end_with_their_reason() -> None:
    pulled = step_status(
        job(), pod({"waiting": {"reason": "ErrImageNeverPull", "message": "no"}}), NOW, 300
    )
    assert (
        pulled.exit_code == NEVER_RAN
        and "tool:1" in pulled.message
        and "ErrImageNeverPull" in pulled.message
    )
    evicted = step_status(
        job(), pod({"running": {}}, reason="Evicted", message="low on memory"), NOW, 300
    )
    assert (
        evicted.exit_code == NEVER_RAN
        and "evicted" in evicted.message
        and "low on memory" in evicted.message
    )


def test_an_unschedulable_pod_waits_for_its_grace() -> None:
    waiting = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
               "message": "Insufficient cpu", "lastTransitionTime": "2027-01-15T08:00:00Z"}  # fmt: skip
    start = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    unplaced = pod({"waiting": {"reason": "ContainerCreating"}}, conditions=[waiting])
    assert step_status(job(), unplaced, start + 10, 300).state is RunState.QUEUED
    late = step_status(job(), unplaced, start + 301, 300)
    assert late.exit_code == NEVER_RAN and "Insufficient cpu" in late.message


def test_running_and_queued() -> None:
    assert step_status(job(), pod({"running": {}}), NOW, 300).state is RunState.RUNNING
    assert step_status(job(), None, NOW, 300).state is RunState.QUEUED
