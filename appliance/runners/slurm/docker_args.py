"""``docker run`` as a SLURM step runs it: the docker runner's isolation, as command-line
flags, each one argv item (nothing is ever given to a shell)."""

from __future__ import annotations

from appliance.errors import RunnerError
from appliance.model import Resources
from appliance.runners.base import StepRun
from appliance.volumes import Volumes

WORKDIR = "/job"
DEFAULT_USER = "1000:1000"


def _mount(source: str, target: str, *, read_only: bool) -> list[str]:
    if any(c in source + target for c in ",\n\r\x00"):
        raise RunnerError(f"cannot mount {source!r}: a comma or a control character in it")
    spec = f"type=bind,source={source},target={target}" + (",readonly" if read_only else "")
    return ["--mount", spec]


def docker_argv(run: StepRun, limits: Resources, *, name: str, instance: str, volumes: Volumes,
                tmp_size: str) -> list[str]:  # fmt: skip
    """The ``docker run`` of one step, its container named ``name``."""
    step = run.current
    if not step.image:
        raise RunnerError(f"step {run.step + 1} of job {run.job_id} has no image to run")
    argv = ["docker", "run", "--name", name, "--init",
            "--label", f"appliance.instance={instance}", "--label", f"appliance.job={run.job_id}",
            "--network", "bridge" if limits.network else "none",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
            "--cgroupns", "private", "--log-driver", "none",  # its output reaches us attached
            "--user", limits.user or DEFAULT_USER, "--workdir", step.workdir or WORKDIR]  # fmt: skip
    if not any(m.target == "/tmp" for m in run.plan.mounts):
        argv += ["--tmpfs", f"/tmp:rw,size={tmp_size},mode=1777"]
    for capability in limits.capabilities or ():
        argv += ["--cap-add", capability]
    if limits.read_only_root is not False:
        argv.append("--read-only")
    if limits.memory:
        argv += ["--memory", str(limits.memory), "--memory-swap", str(limits.memory)]
    if limits.cpus:
        argv += ["--cpus", f"{limits.cpus:g}"]
    if limits.pids:
        argv += ["--pids-limit", str(limits.pids)]
    argv += _mount(volumes.text(run.plan.work), WORKDIR, read_only=False)
    for staged in run.plan.inputs:
        argv += _mount(volumes.text(staged.source), f"{WORKDIR}/{staged.path}", read_only=True)
    for mount in run.plan.mounts:
        argv += _mount(volumes.text(run.plan.work.child(mount.source)), mount.target,
                       read_only=False)  # fmt: skip
    for key, value in step.env.items():
        argv += ["--env", f"{key}={value}"]
    if step.stdin is not None:  # a file as stdin: a shell opens it, the argv intact
        return [*argv, "--entrypoint", "/bin/sh", step.image, "-c", 'exec "$@" < "$0"',
                f"{WORKDIR}/{step.stdin}", *step.argv]  # fmt: skip
    return [*argv, "--entrypoint", step.argv[0], step.image, *step.argv[1:]]
