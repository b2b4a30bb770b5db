"""What a job's container is: docker-py's create arguments for a job (plain JSON, so that
a job waiting for a slot can keep them in its directory), and the labels that find it.

By default the container has no network, no capabilities, cannot gain privileges, has a
read-only root with a small writable ``/tmp``, runs as a non-root user, and has memory,
CPU and process limits; a service loosens these only explicitly, through its resources.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.errors import RunnerError
from appliance.model import Resources
from appliance.runners.base import JobSpec

WORKDIR = "/job"
LABEL_INSTANCE = "appliance.instance"
LABEL_JOB = "appliance.job"
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


def container_options(
    spec: JobSpec, limits: Resources, *, instance: str, tmp_size: str,
    host_path: Callable[[Path], str],
) -> dict[str, Any]:  # fmt: skip
    """The container of ``spec`` (named ``<instance>-<job>``) under ``limits``. Makes the
    input files' mount points and gives the job's directory to the job's user."""
    name = f"{instance}-{spec.job_id}"
    user = limits.user or DEFAULT_USER
    owner = parse_user(user)
    if owner is not None and os.geteuid() == 0:
        os.chown(spec.workdir, *owner)  # the job's user writes its outputs there
    mounts = [bind(WORKDIR, host_path(spec.workdir), read_only=False)]
    for staged in spec.inputs:
        target = spec.workdir / staged.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(exist_ok=True)  # the mount point, ours rather than the engine's
        mounts.append(bind(f"{WORKDIR}/{staged.path}", host_path(staged.source), read_only=True))
    if not spec.image:
        raise RunnerError(f"service {spec.service_id} has no image to run")
    options: dict[str, Any] = {
        "name": name,
        "entrypoint": [spec.argv[0]],
        "command": list(spec.argv[1:]),
        "working_dir": WORKDIR,
        "environment": spec.env,
        "labels": {
            LABEL_INSTANCE: instance,
            LABEL_JOB: spec.job_id,
            LABEL_SERVICE: spec.service_id,
            LABEL_SUBMITTED: f"{spec.submitted_at:020.6f}",
        },
        "mounts": mounts,
        "user": user,
        "network_mode": "bridge" if limits.network else "none",
        "cap_drop": ["ALL"],
        "cap_add": list(limits.capabilities or []) or None,
        "security_opt": ["no-new-privileges:true"],
        "read_only": limits.read_only_root is not False,
        "tmpfs": {"/tmp": f"rw,size={tmp_size},mode=1777"},
        "init": True,  # a real PID 1 passes SIGTERM on to the tool
        "detach": True,
    }
    if limits.memory:
        options["mem_limit"] = limits.memory
        options["memswap_limit"] = limits.memory
    if limits.cpus:
        options["nano_cpus"] = int(limits.cpus * 1e9)
    if limits.pids:
        options["pids_limit"] = limits.pids
    options["image"] = spec.image
    return options
