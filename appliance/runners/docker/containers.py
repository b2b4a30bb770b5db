"""What a job's container is: docker-py's create arguments for a job (plain JSON, so that
a job waiting for a slot can keep them in its directory), and the labels that find it.

By default the container has no network, no capabilities, cannot gain privileges, has a
read-only root with a small writable ``/tmp``, runs as a non-root user in a cgroup
namespace of its own, has memory, CPU and process limits, and its kept output is capped; a service loosens these only explicitly, through its resources.
"""

from __future__ import annotations

import os
from typing import Any

from appliance.errors import RunnerError
from appliance.model import Resources
from appliance.runners.base import StepRun
from appliance.runners.docker.identity import Identity
from appliance.safefs import fresh_file, is_plain, make_dirs
from appliance.volumes import Volumes

WORKDIR = "/job"
LABEL_INSTANCE = "appliance.instance"
LABEL_JOB = "appliance.job"
LABEL_STEP = "appliance.step"
LABEL_WORK = "appliance.work"  # the job's work location (a path on the jobs volume)
LABEL_STDOUT = "appliance.stdout"  # where the step's stdout is kept (relative to the work)
LABEL_STDERR = "appliance.stderr"
LABEL_SERVICE = "appliance.service"
LABEL_SUBMITTED = "appliance.submitted"  # the job's submission time: waiting ones start in order
DEFAULT_USER = "1000:1000"


def parse_user(user: str) -> tuple[int, int] | None:
    uid, _, gid = user.partition(":")
    if uid.isdigit() and (gid.isdigit() or not gid):
        return int(uid), int(gid or uid)
    return None


def bind(target: str, source: str, *, read_only: bool) -> dict[str, Any]:
    """A bind mount as the engine's API (and docker-py's ``Mount``) writes it."""
    return {"Target": target, "Source": source, "Type": "bind", "ReadOnly": read_only}


def container_name(instance: str, run: StepRun) -> str:
    return f"{instance}-{run.job_id}{run.handle_suffix()}"


def container_options(
    run: StepRun, limits: Resources, *, instance: str, tmp_size: str, local: Volumes,
    engine: Volumes, log_max: str = "64m",
) -> dict[str, Any]:  # fmt: skip
    """The container of one step (named ``<instance>-<job>[-<step>]``) under ``limits``:
    the work directory read-write at /job, each input read-only at its path in it (mount
    sources as the engine's host sees them). Makes the inputs' mount points and gives
    the work directory to the job's user. ``identity`` is what the backend needs to give
    that user a name and a home when the container is made (identity.py), not an option
    of the engine's."""
    step = run.current
    workdir = local.path(run.plan.work)
    user = limits.user or DEFAULT_USER
    owner = parse_user(user)
    if owner is not None and os.geteuid() == 0:
        os.chown(workdir, *owner)  # the job's user writes its outputs there
    mounts = [bind(WORKDIR, engine.text(run.plan.work), read_only=False)]
    # An earlier step of the job may have left symlinks in the work directory: mount
    # points and sources are made without following any (appliance.safefs), or the
    # engine, which resolves a bind mount's source on the host, would mount the host.
    for staged in run.plan.inputs:
        if not is_plain(workdir, staged.path):  # the mount point, ours rather than the engine's
            fresh_file(workdir, staged.path)
        mounts.append(bind(f"{WORKDIR}/{staged.path}", engine.text(staged.source), read_only=True))
    for mount in run.plan.mounts:  # more of the work directory, at the task's own paths
        make_dirs(workdir, mount.source, owner)
        mounts.append(bind(mount.target, engine.text(run.plan.work.child(mount.source)),
                           read_only=False))  # fmt: skip
    if not step.image:
        raise RunnerError(f"step {run.step + 1} of job {run.job_id} has no image to run")

    entrypoint, command = [step.argv[0]], list(step.argv[1:])
    if step.stdin is not None:  # the engine gives no file as stdin: a shell does, argv intact
        entrypoint, command = (
            ["/bin/sh", "-c", 'exec "$@" < "$0"'],
            [f"{WORKDIR}/{step.stdin}", *step.argv],
        )
    tmp_mounted = any(m.target == "/tmp" for m in run.plan.mounts)
    options: dict[str, Any] = {
        "name": container_name(instance, run),
        "entrypoint": entrypoint,
        "command": command,
        "working_dir": step.workdir or WORKDIR,
        "environment": step.env,
        "labels": {
            LABEL_INSTANCE: instance,
            LABEL_JOB: run.job_id,
            LABEL_STEP: str(run.step),
            LABEL_WORK: run.plan.work.path,
            LABEL_STDOUT: step.stdout,
            LABEL_STDERR: step.stderr,
            LABEL_SERVICE: run.service_id,
            LABEL_SUBMITTED: f"{run.submitted_at:020.6f}",
        },
        "mounts": mounts,
        "user": user,
        "network_mode": "bridge" if limits.network else "none",
        "cap_drop": ["ALL"],
        "cap_add": list(limits.capabilities or []) or None,
        "security_opt": ["no-new-privileges:true"],
        "read_only": limits.read_only_root is not False,
        "tmpfs": {} if tmp_mounted else {"/tmp": f"rw,size={tmp_size},mode=1777"},
        "init": True,  # a real PID 1 passes SIGTERM on to the tool
        "cgroupns": "private",  # it sees its own cgroup only, not the host's tree
        # the engine keeps at most the last log_max of its output (copied to the job's
        # stdout and stderr at its end)
        "log_config": {"type": "json-file", "config": {"max-size": log_max, "max-file": "1"}},
        "detach": True,
    }
    if limits.memory:
        options["mem_limit"] = limits.memory
        options["memswap_limit"] = limits.memory
    if limits.cpus:
        options["nano_cpus"] = int(limits.cpus * 1e9)
    if limits.pids:
        options["pids_limit"] = limits.pids
    options["image"] = step.image
    options["identity"] = Identity(str(workdir), engine.text(run.plan.work), owner,
                                   tuple(step.env))  # fmt: skip
    return options
