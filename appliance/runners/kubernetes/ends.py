"""How a step is doing, read from its Job and its pod (both as the API gives them, JSON).

The Job says whether it ended (conditions ``Complete`` or ``Failed``, the latter with
``DeadlineExceeded`` at the time limit: the cluster then deletes the pod, so the Job is
read, not the pod). The pod says the rest: the exit code and ``OOMKilled`` of its
container, an image that cannot be pulled, a pod no node can take, an eviction.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from appliance.runners.base import RunState, RunStatus

IMAGE_PROBLEMS = {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
                  "RegistryUnavailable"}  # fmt: skip
CONTAINER_PROBLEMS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
SIGKILL_EXIT = 137
NEVER_RAN = 126  # "cannot execute": the job ends in ERROR with the reason (appliance.exits)

Json = Mapping[str, Any]


def _condition(obj: Json, kind: str) -> Json | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


def _container(pod: Json | None) -> Json:
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    return dict(statuses[0]) if statuses else {}


def terminated(pod: Json | None) -> Json | None:
    state = _container(pod).get("state") or {}
    value = state.get("terminated")
    return dict(value) if value else None


def _ended(pod: Json | None, fallback: str) -> RunStatus:
    """A finished step, from its container's end (when the pod is still there)."""
    end = terminated(pod)
    if end is None:
        return RunStatus(RunState.FINISHED, NEVER_RAN, fallback)
    code = end.get("exitCode")
    reason = str(end.get("reason") or "")
    if reason == "OOMKilled":
        return RunStatus(RunState.FINISHED, SIGKILL_EXIT,
                         "the job ran out of memory and was killed", oom=True)  # fmt: skip
    if reason in ("StartError", "ContainerCannotRun"):
        return RunStatus(RunState.FINISHED, NEVER_RAN,
                         f"the container could not start: {end.get('message') or reason}")  # fmt: skip
    return RunStatus(
        RunState.FINISHED,
        int(code) if isinstance(code, int) else NEVER_RAN,
        "" if isinstance(code, int) else f"the container ended without an exit code ({reason})",
    )


def timestamp(value: Any, default: float) -> float:
    """An API time (``2026-11-30T09:00:00Z``) as unix time."""
    if isinstance(value, datetime):
        return value.timestamp()
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


def pod_problem(pod: Json | None, now: float, unschedulable_grace: float) -> RunStatus | None:
    """A pod that will never run its step, as a finished status with the reason."""
    if pod is None:
        return None
    status = pod.get("status") or {}
    if status.get("reason") == "Evicted":
        return RunStatus(RunState.FINISHED, NEVER_RAN,
                         f"the node evicted the job's pod: {status.get('message', '')}".strip())  # fmt: skip
    waiting = (_container(pod).get("state") or {}).get("waiting") or {}
    reason = str(waiting.get("reason") or "")
    image = _container(pod).get("image") or ""
    if reason in IMAGE_PROBLEMS:
        return RunStatus(RunState.FINISHED, NEVER_RAN,
                         f"the image {image} cannot be pulled ({reason}): "
                         f"{waiting.get('message', '')}".strip())  # fmt: skip
    if reason in CONTAINER_PROBLEMS:
        return RunStatus(RunState.FINISHED, NEVER_RAN,
                         f"the container cannot be made ({reason}): {waiting.get('message', '')}")  # fmt: skip
    unplaced = _unschedulable(pod)
    if unplaced is not None:
        waited = now - timestamp(unplaced.get("lastTransitionTime"), now)
        if waited >= unschedulable_grace:
            return RunStatus(RunState.FINISHED, NEVER_RAN,
                             f"no node can run it: {unplaced.get('message', '')}")  # fmt: skip
    return None


def _unschedulable(pod: Json | None) -> Json | None:
    for condition in ((pod or {}).get("status") or {}).get("conditions") or []:
        if (condition.get("type") == "PodScheduled" and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"):  # fmt: skip
            return dict(condition)
    return None


def waiting_status(pod: Json | None) -> RunStatus:
    """Why a step whose pod is not running yet waits (appliance.waiting's reasons)."""
    if pod is None:
        return RunStatus(RunState.QUEUED, reason="starting", message="its pod is being made")
    unplaced = _unschedulable(pod)
    if unplaced is not None:
        return RunStatus(RunState.QUEUED, reason="backend",
                         message=f"Kubernetes: {unplaced.get('message') or 'no node yet'}")  # fmt: skip
    waiting = (_container(pod).get("state") or {}).get("waiting") or {}
    if waiting.get("reason") == "ContainerCreating":
        return RunStatus(RunState.QUEUED, reason="image",
                         message="its container is being made (its image pulled if needed)")  # fmt: skip
    return RunStatus(RunState.QUEUED, reason="backend", message="its pod is waiting for a node")


def step_status(job: Json, pod: Json | None, now: float, unschedulable_grace: float) -> RunStatus:
    """The step's status from its Job and (if any) its pod."""
    if _condition(job, "Complete") is not None:  # it succeeded, whether or not the pod is seen yet
        return _ended(pod, "") if terminated(pod) is not None else RunStatus(RunState.FINISHED, 0)
    failed = _condition(job, "Failed")
    if failed is not None:
        if failed.get("reason") == "DeadlineExceeded":
            return RunStatus(RunState.FINISHED, SIGKILL_EXIT,
                             "Kubernetes stopped it at its time limit (activeDeadlineSeconds)")  # fmt: skip
        return _ended(pod, f"the Job failed: {failed.get('reason')}: {failed.get('message', '')}")
    end = terminated(pod)
    if end is not None:  # the container ended; the Job's condition follows shortly
        return _ended(pod, "")
    problem = pod_problem(pod, now, unschedulable_grace)
    if problem is not None:
        return problem
    if (_container(pod).get("state") or {}).get("running") is not None:
        return RunStatus(RunState.RUNNING)
    return waiting_status(pod)
