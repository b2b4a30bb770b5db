"""The slurm backend: each step of a job is one SLURM batch job, submitted with ``sbatch``.

The scheduler runs on a submit host (where ``sbatch`` works), against the same database
as the web process; the jobs and uploads volumes are on a file system the compute nodes
share, at the roots the runner configuration names (option ``roots``). A step is
submitted as the constant script of ``script.py`` with the step's argv as the script's
arguments (``sbatch --parsable SCRIPT ARG...``): nothing is pasted into a script.
Resources become ``--mem`` (MiB, rounded up), ``--cpus-per-task`` (rounded up) and
``--time`` (whole minutes, rounded up). One ``squeue --json`` per status round follows
every job; a job that has left squeue is asked of ``scontrol``, and one SLURM no longer
knows is read from its exit record in the job directory, or reported lost.

Two ways to run the tool (option ``mode``): ``none``, directly on the node (as the
previous system's services did), or ``docker``, in the step's image with the docker
runner's isolation, the limits passed to docker (the container is not in the job's
cgroup) and a SIGTERM trapped to kill the container.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.errors import RunnerError, RunnerUnavailableError
from appliance.exits import ExitRecord, read_exit_records, record_dir
from appliance.model import Resources
from appliance.offloop import FileWork
from appliance.plan import JOBS, Location, PlanError
from appliance.runners.base import RunState, RunStatus, StepRun
from appliance.runners.slurm.docker_args import DEFAULT_USER, docker_argv
from appliance.runners.slurm.script import SCRIPTS
from appliance.volumes import Volumes

if TYPE_CHECKING:
    from appliance.runners.config import RunnerConfig
    from appliance.settings import Settings

log = logging.getLogger(__name__)

QUEUED_STATES = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
                 "RESIZING", "SUSPENDED", "STAGE_OUT"}  # fmt: skip
RUNNING_STATES = {"RUNNING", "COMPLETING", "SIGNALING"}
LOST_STATES = {"NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED", "REVOKED", "SPECIAL_EXIT"}
UNREACHABLE = re.compile(r"unable to contact|socket timed out|connection refused|"
                         r"communication connection failure|zero bytes were transmitted", re.I)  # fmt: skip
SIGTERM_EXIT = 143


def mebibytes(size: int) -> int:
    return max(1, math.ceil(size / 1024**2))


def minutes(seconds: float) -> int:
    return max(1, math.ceil(seconds / 60))


def sbatch_resources(limits: Resources) -> list[str]:
    """A step's limits as sbatch options (the time limit in whole minutes, rounded up)."""
    options = []
    if limits.memory:
        options.append(f"--mem={mebibytes(limits.memory)}M")
    if limits.cpus:
        options.append(f"--cpus-per-task={math.ceil(limits.cpus)}")
    if limits.time_limit:
        options.append(f"--time={minutes(limits.time_limit)}")
    return options


KEPT_VARIABLES = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ")


def command_environment() -> dict[str, str]:
    """What SLURM commands (and so, through ``--export=ALL``, a batch script) get of the
    scheduler's environment: PATH and the like, and SLURM's own variables; never the
    appliance's settings or secrets. (``--export=NONE`` would make slurmd load the
    user's login environment for every job: half the throughput, measured.)"""
    return {k: v for k, v in os.environ.items() if k in KEPT_VARIABLES or k.startswith("SLURM_")}


def exit_code_of(raw: Any) -> int | None:
    """squeue --json's exit_code is a raw wait status (768 is exit 3; 9 is SIGKILL)."""
    if not isinstance(raw, int):
        return None
    signal = raw & 0x7F
    return 128 + signal if signal else raw >> 8


class SlurmBackend:
    def __init__(self, config: RunnerConfig, settings: Settings) -> None:
        options = config.options
        self.mode = str(options.get("mode") or "none")
        self.limits = config.limits
        self.instance = settings.instance
        self.local = Volumes.local(settings)
        self.nodes = Volumes.from_option(options.get("roots"), self.local, "options.roots")
        self.submit_options = [f"--{k}={options[k]}" for k in ("partition", "account", "qos")
                               if options.get(k)] + list(options.get("sbatch_options") or [])  # fmt: skip
        self.tmp_size = str(options.get("tmp_size") or "64m")
        self.timeout = float(options.get("timeout") or 30.0)
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        script_dir = Path(str(options.get("script_dir") or cache / "appliance" / "slurm"))
        self.script = script_dir / f"appliance-step-{self.mode}.sh"
        self.status_rounds = 0  # each asks squeue --json once, however many jobs it follows
        self.files = FileWork(settings.file_timeout, name="slurm-files")

    # -- commands -------------------------------------------------------------------------

    async def _run(self, *argv: str) -> str:
        """Run a SLURM command; its stdout. RunnerUnavailableError when the controller does
        not answer (the job is retried), RunnerError when it refuses."""
        if shutil.which(argv[0]) is None:
            raise RunnerUnavailableError(f"{argv[0]} is not on this machine's PATH: run the "
                                         "scheduler on a SLURM submit host")  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=command_environment(),
        )  # fmt: skip
        try:
            async with asyncio.timeout(self.timeout):
                out, err = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise RunnerUnavailableError(
                f"{argv[0]} did not answer in {self.timeout:g} s"
            ) from None
        if process.returncode != 0:
            message = err.decode(errors="replace").strip() or f"exit code {process.returncode}"
            if UNREACHABLE.search(message):
                raise RunnerUnavailableError(f"SLURM does not answer ({argv[0]}): {message}")
            raise RunnerError(f"{argv[0]} refused: {message}")
        return out.decode(errors="replace")

    def _write_script(self) -> None:
        """The constant batch script, kept where only the scheduler writes."""
        text = SCRIPTS[self.mode]
        if self.script.is_file() and self.script.read_text() == text:
            return
        self.script.parent.mkdir(parents=True, exist_ok=True)
        self.script.parent.chmod(0o755)
        temporary = self.script.with_suffix(".tmp")
        temporary.write_text(text)
        temporary.chmod(0o755)
        temporary.replace(self.script)

    # -- submit ---------------------------------------------------------------------------

    def handle_of(self, slurm_id: str, run: StepRun) -> str:
        return f"{slurm_id}:{run.job_id}:{run.step}"

    @staticmethod
    def parse(handle: str) -> tuple[str, str, int]:
        slurm_id, _, rest = handle.partition(":")
        job_id, _, step = rest.partition(":")
        return slurm_id, job_id, int(step) if step.isdigit() else 0

    def _arguments(self, run: StepRun, workdir: str, name: str) -> list[str]:
        step = run.current
        limits = run.plan.resources.over(self.limits)
        variables = [f"{k}={v}" for k, v in step.env.items()]
        if self.mode == "docker":
            program = docker_argv(run, limits, name=name, instance=self.instance,
                                  volumes=self.nodes, tmp_size=self.tmp_size)  # fmt: skip
        else:
            program = list(step.argv)
        return [workdir, str(run.step), step.stdout, step.stderr, name, str(len(variables)),
                *variables, "--", *program]  # fmt: skip

    async def submit(self, run: StepRun) -> str:
        await asyncio.to_thread(self._write_script)
        name = f"{self.instance}-{run.job_id}{run.handle_suffix()}"
        existing = await self._find(name)
        if existing is not None:  # submitted before (a restarted scheduler): the same job
            return self.handle_of(existing, run)
        if self.mode == "docker" and os.geteuid() == 0:  # the container's user writes there
            uid, _, gid = (run.plan.resources.over(self.limits).user or DEFAULT_USER).partition(":")
            if uid.isdigit():
                os.chown(self.local.path(run.plan.work), int(uid), int(gid or uid))
        workdir = self.nodes.text(run.plan.work)
        await asyncio.to_thread(os.makedirs, record_dir(self.local.path(run.plan.work)),
                                exist_ok=True)  # fmt: skip
        limits = run.plan.resources.over(self.limits)
        # SLURM's own log goes in the record folder: in the job's directory, slurmd would
        # open (as root, on some sites) whatever an earlier step left under that name.
        options = ["--parsable", f"--job-name={name}", f"--chdir={workdir}",
                   f"--output={record_dir(workdir)}/.slurm-{run.step}.log", "--export=ALL",
                   *sbatch_resources(limits), *self.submit_options]  # fmt: skip
        out = await self._run("sbatch", *options, str(self.script),
                              *self._arguments(run, workdir, name))  # fmt: skip
        slurm_id = out.strip().split(";")[0]
        if not slurm_id.isdigit():
            raise RunnerError(f"sbatch answered {out.strip()!r}, not a job id")
        return self.handle_of(slurm_id, run)

    async def _find(self, name: str) -> str | None:
        """The id of a job of ours with this name, if SLURM has one (in any state)."""
        out = await self._run("squeue", "--noheader", "--states=all", "--format=%i",
                              f"--name={name}")  # fmt: skip
        ids = out.split()
        return ids[-1] if ids else None

    # -- status ---------------------------------------------------------------------------

    async def status(self, handles: Sequence[str]) -> dict[str, RunStatus]:
        if not handles:
            return {}
        self.status_rounds += 1
        listed = json.loads(await self._run("squeue", "--json"))
        jobs = {str(j.get("job_id")): j for j in listed.get("jobs", [])}
        parsed = [self.parse(handle) for handle in handles]
        records = await self.files.call("read exit records", read_exit_records,
                                        [(self._workdir(job_id), step)
                                         for _, job_id, step in parsed])  # fmt: skip
        result = {}
        for handle, (slurm_id, _, _), record in zip(handles, parsed, records, strict=True):
            job = jobs.get(slurm_id)
            if job is None:
                job = await self._scontrol(slurm_id)
            result[handle] = self._status_of(job, record, slurm_id)
        return result

    async def _scontrol(self, slurm_id: str) -> dict[str, Any] | None:
        """A job that left squeue, as ``scontrol`` tells it (None if SLURM forgot it)."""
        try:
            out = await self._run("scontrol", "--oneliner", "show", "job", slurm_id)
        except RunnerError as exc:
            if isinstance(exc, RunnerUnavailableError):
                raise
            return None
        fields = dict(item.split("=", 1) for item in out.split() if "=" in item)
        code, _, signal = fields.get("ExitCode", "").partition(":")
        raw = int(code) << 8 | int(signal) if code.isdigit() and signal.isdigit() else None
        return {"job_state": fields.get("JobState"), "exit_code": raw,
                "state_reason": fields.get("Reason", "")}  # fmt: skip

    def _workdir(self, job_id: str) -> Path | None:
        try:
            return self.local.path(Location(JOBS, job_id))
        except PlanError:
            return None

    def _status_of(
        self, job: dict[str, Any] | None, record: ExitRecord | None, slurm_id: str
    ) -> RunStatus:
        if job is None:
            if record is not None:
                return RunStatus(RunState.FINISHED, record.code, record.message, record.oom)
            return RunStatus(RunState.LOST, message=f"SLURM no longer knows job {slurm_id}")
        state = str(job.get("job_state") or "").split()[0]
        reason = str(job.get("state_reason") or "")
        if state in QUEUED_STATES:  # SLURM's own reason: Priority, Resources, a limit...
            return RunStatus(RunState.QUEUED, reason="backend",
                             message=f"SLURM job {slurm_id} is {state}: {reason or 'no reason'}")  # fmt: skip
        if state in RUNNING_STATES:
            return RunStatus(RunState.RUNNING)
        if state in ("COMPLETED", "FAILED"):
            if record is not None:
                return RunStatus(RunState.FINISHED, record.code, record.message, record.oom)
            code = exit_code_of(job.get("exit_code"))
            return RunStatus(RunState.FINISHED, code if code is not None else 1,
                             "" if state == "COMPLETED" else f"SLURM: {state} ({reason})")  # fmt: skip
        if state == "OUT_OF_MEMORY":
            return RunStatus(RunState.FINISHED, 137, "the job ran out of memory and was killed",
                             oom=True)  # fmt: skip
        if state == "CANCELLED":
            code = record.code if record is not None else SIGTERM_EXIT
            return RunStatus(RunState.FINISHED, code, "cancelled in SLURM")
        if state == "TIMEOUT":
            return RunStatus(RunState.FINISHED, SIGTERM_EXIT, "SLURM stopped it at its time limit")
        if state in LOST_STATES:
            return RunStatus(RunState.LOST, message=f"SLURM: {state} ({reason})")
        return RunStatus(RunState.LOST, message=f"SLURM reports the unknown state {state!r}")

    # -- cancel, checks, close ----------------------------------------------------------------

    async def cancel(self, handle: str) -> None:
        slurm_id, _, _ = self.parse(handle)
        try:
            await self._run("scancel", slurm_id)
        except RunnerError as exc:
            if isinstance(exc, RunnerUnavailableError) or "Invalid job id" not in str(exc):
                raise

    async def probe(self) -> str:
        version = (await self._run("sinfo", "--version")).strip()
        partitions = (await self._run("sinfo", "--noheader", "--format=%P %a")).split("\n")
        return f"{version}; partitions: {', '.join(p.strip() for p in partitions if p.strip())}"

    async def missing_images(self, images: Sequence[str]) -> list[str]:
        return []  # the images are on the compute nodes' engines, out of sight from here

    async def close(self) -> None:
        self.files.close()


def create(config: RunnerConfig, settings: Settings) -> SlurmBackend:
    return SlurmBackend(config, settings)
