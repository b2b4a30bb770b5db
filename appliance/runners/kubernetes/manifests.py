"""What a job's step is on Kubernetes: a batch/v1 Job (plain JSON), its name and labels.

The Job runs one pod, once (``restartPolicy: Never``, ``backoffLimit: 0``, no replacement
of a pod deleted or evicted: ``podReplacementPolicy: Failed`` and a pod failure policy that
fails the Job on a disruption), stopped by the
cluster at the step's time limit (``activeDeadlineSeconds``) and removed a while after it
ends (``ttlSecondsAfterFinished``). Its pod mounts the job's directory from the jobs claim
(by subPath) at /job, each input read-only from its claim at its path in /job, a small
emptyDir at /tmp; it runs as a non-root user, with a read-only root, no capabilities, no
privilege escalation, seccomp RuntimeDefault, no service-account token and no service
links, with requests equal to limits. Isolated jobs (no ``network``) carry the label that
the chart's NetworkPolicy denies all traffic to and from.

The step's argv runs under ``/bin/sh`` only to send its stdout and stderr to the files the
scheduler made for them (and a file to its stdin): the paths are positional parameters,
never pasted into the script. So the image needs ``/bin/sh``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from appliance.errors import RunnerError
from appliance.model import Resources
from appliance.plan import Location
from appliance.runners.base import StepRun, with_identity

WORKDIR = "/job"
LABEL_MANAGED = "app.kubernetes.io/managed-by"
LABEL_INSTANCE = "appliance.instance"
LABEL_JOB = "appliance.job"
LABEL_STEP = "appliance.step"
LABEL_ROLE = "appliance.role"  # "job" on job pods: what the chart's policies select
LABEL_NETWORK = "appliance.network"  # "none" (all traffic denied) or "allowed"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # set by the Job controller on its pods
DEFAULT_USER = "1000:1000"
REDIRECT = 'i=$1 o=$2 e=$3; shift 3; exec "$@" <"$i" >"$o" 2>"$e"'
_NOT_LABEL = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class PodOptions:
    """What the runner configuration says about every job pod."""

    claims: Mapping[str, str]  # volume name -> PersistentVolumeClaim
    image_pull_policy: str = "IfNotPresent"
    node_selector: Mapping[str, str] | None = None
    tolerations: Sequence[Mapping[str, Any]] = ()
    service_account: str | None = None
    stop_grace: float = 10.0
    tmp_size: str = "64Mi"
    finished_ttl: int = 3600


def dns_label(text: str, limit: int = 63) -> str:
    """``text`` as a DNS-1123 label (lower case, digits and '-', at most ``limit``)."""
    label = _NOT_LABEL.sub("-", text.lower()).strip("-")[:limit].strip("-")
    return label or "appliance"


def job_name(instance: str, run: StepRun) -> str:
    """``<instance>-<job>[-<step>]``: the job id (16 characters) always fits."""
    tail = f"{run.job_id}{run.handle_suffix()}".lower()
    return f"{dns_label(instance, 62 - len(tail))}-{tail}"


def cpu_quantity(cpus: float) -> str:
    return f"{max(1, math.ceil(cpus * 1000))}m"


def memory_quantity(size: int) -> str:
    for unit, factor in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(int(size))


def parse_user(user: str) -> tuple[int, int]:
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise RunnerError(f"user {user!r}: Kubernetes needs numeric ids (uid[:gid])")
    return int(uid), int(gid or uid)


def _claim(options: PodOptions, location: Location) -> str:
    claim = options.claims.get(location.volume)
    if not claim:
        raise RunnerError(f"the runner names no claim for the {location.volume} volume")
    return claim


def _mounts(run: StepRun, options: PodOptions) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pod's volumes (one per claim used, and /tmp) and the container's mounts."""
    plan = run.plan
    claims: dict[str, str] = {}  # volume name in the pod -> claim

    def volume(location: Location) -> str:
        name = f"vol-{location.volume}"
        claims[name] = _claim(options, location)
        return name

    mounts: list[dict[str, Any]] = [
        {"name": volume(plan.work), "mountPath": WORKDIR, "subPath": plan.work.path}
    ]
    for staged in plan.inputs:
        mounts.append({"name": volume(staged.source), "mountPath": f"{WORKDIR}/{staged.path}",
                       "subPath": staged.source.path, "readOnly": True})  # fmt: skip
    for mount in plan.mounts:  # more of the work directory, at the task's own paths
        mounts.append({"name": volume(plan.work), "mountPath": mount.target,
                       "subPath": plan.work.child(mount.source).path})  # fmt: skip
    volumes: list[dict[str, Any]] = [
        {"name": name, "persistentVolumeClaim": {"claimName": claim}}
        for name, claim in sorted(claims.items())
    ]
    if not any(m.target == "/tmp" for m in plan.mounts):
        volumes.append({"name": "tmp", "emptyDir": {"sizeLimit": options.tmp_size}})
        mounts.append({"name": "tmp", "mountPath": "/tmp"})
    return volumes, mounts


def _resources(limits: Resources) -> dict[str, dict[str, str]]:
    amounts: dict[str, str] = {}
    if limits.cpus:
        amounts["cpu"] = cpu_quantity(limits.cpus)
    if limits.memory:
        amounts["memory"] = memory_quantity(limits.memory)
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


def labels_of(instance: str, run: StepRun, limits: Resources) -> dict[str, str]:
    return {
        LABEL_MANAGED: "appliance",
        LABEL_INSTANCE: dns_label(instance),
        LABEL_JOB: run.job_id,
        LABEL_STEP: str(run.step),
        LABEL_ROLE: "job",
        LABEL_NETWORK: "allowed" if limits.network else "none",
    }


def job_manifest(
    run: StepRun, limits: Resources, *, instance: str, options: PodOptions
) -> dict[str, Any]:
    """The batch/v1 Job of one step under ``limits`` (the plan's, over the runner's)."""
    step = run.current
    if not step.image:
        raise RunnerError(f"step {run.step + 1} of job {run.job_id} has no image to run")
    uid, gid = parse_user(limits.user or DEFAULT_USER)
    volumes, mounts = _mounts(run, options)
    stdin = f"{WORKDIR}/{step.stdin}" if step.stdin is not None else "/dev/null"
    argv = ["/bin/sh", "-c", REDIRECT, "sh", stdin, f"{WORKDIR}/{step.stdout}",
            f"{WORKDIR}/{step.stderr}", *step.argv]  # fmt: skip
    capabilities: dict[str, list[str]] = {"drop": ["ALL"]}
    if limits.capabilities:
        capabilities["add"] = list(limits.capabilities)
    container: dict[str, Any] = {
        "name": "step",
        "image": step.image,
        "imagePullPolicy": options.image_pull_policy,
        "command": argv,
        "workingDir": step.workdir or WORKDIR,
        # a user name and a home for a uid the image does not know (no passwd line here)
        "env": [{"name": k, "value": v} for k, v in with_identity(dict(step.env)).items()],
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": limits.read_only_root is not False,
            "capabilities": capabilities,
        },
        "terminationMessagePolicy": "File",
    }
    resources = _resources(limits)
    if resources:
        container["resources"] = resources
    labels = labels_of(instance, run, limits)
    pod_security: dict[str, Any] = {
        "runAsUser": uid,
        "runAsGroup": gid,
        "runAsNonRoot": uid != 0,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": math.ceil(options.stop_grace),
        "securityContext": pod_security,
        "containers": [container],
        "volumes": volumes,
    }
    if options.service_account:
        pod["serviceAccountName"] = options.service_account
    if options.node_selector:
        pod["nodeSelector"] = dict(options.node_selector)
    if options.tolerations:
        pod["tolerations"] = [dict(t) for t in options.tolerations]
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        # A pod deleted or evicted while it runs fails the Job: never a second pod (the
        # step may have done its work, or half of it), and none while one is terminating.
        "podReplacementPolicy": "Failed",
        "podFailurePolicy": {
            "rules": [
                {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]
        },
        "ttlSecondsAfterFinished": options.finished_ttl,
        "template": {"metadata": {"labels": labels}, "spec": pod},
    }
    if limits.time_limit:
        spec["activeDeadlineSeconds"] = max(1, math.ceil(limits.time_limit))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(instance, run),
            "labels": labels,
            "annotations": {
                "appliance.service": run.service_id,
                "appliance.work": run.plan.work.path,
            },
        },
        "spec": spec,
    }
