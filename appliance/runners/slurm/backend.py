"""The slurm backend: each step of a job is one SLURM batch job, submitted with ``sbatch``.

The scheduler runs on a submit host (where ``sbatch`` works), against the same database
as the web process; the jobs and uploads volumes are on a file system the compute nodes
share, at the roots the runner configuration names (option ``roots``). A step is
submitted as the constant script of ``script.py`` with the step's argv as the script's
arguments (``sbatch --parsable SCRIPT ARG...``): nothing is pasted into a script.
Resources become ``--mem`` (MiB, rounded up), ``--cpus-per-task`` (rounded up) and
``--time`` (whole minutes, rounded up).

What it asks of slurmctld, and how often (docs/runners.md says the same for sites):

- a step's end is read from the exit record its batch script writes (off the event loop,
  at every scheduler round): no question to SLURM for an ordinary end;
- every ``status_interval`` seconds (15 by default), one ``squeue --jobs=ID,... --states=all``
  about the appliance's own unfinished jobs only, in a compact text format; those that
  left the queue without a record are asked of ``sacct`` in one call, or, without
  accounting, of ``scontrol`` one by one (a rare case: a node that died, a purged job);
- a step that ended by a signal (cancelled, its time or memory limit) is asked about at
  once, in the same batched way, for the reason;
- ``sbatch`` per step; ``squeue --name`` before it only when an earlier holder of the job
  may have submitted that step already (a scheduler that died in between).

Two ways to run the tool (option ``mode``): ``none``, directly on the node (as the
previous system's services did), or ``docker``, in the step's image with the docker
runner's isolation, the limits passed to docker (the container is not in the job's
cgroup) and a SIGTERM trapped to kill the container.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import shutil
import time
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


SIGNALLED = {SIGTERM_EXIT, 137}  # ends whose reason SLURM knows better than the record
REASON_EVERY = 1.0  # seconds between two questions about steps stopped by a signal
REASON_WAIT = 20.0  # how long SLURM's reason is awaited before the exit record is enough


def _ended(state: str) -> bool:
    first = state.split()[0] if state else ""
    return bool(first) and first not in QUEUED_STATES and first not in RUNNING_STATES


def _read_ends(
    wanted: list[tuple[Path | None, int]],
) -> tuple[list[ExitRecord | None], list[bool]]:
    """Each step's exit record, and whether its batch script began (its start marker):
    one trip off the event loop for a whole round."""
    records = read_exit_records(wanted)
    started = []
    for (workdir, step), record in zip(wanted, records, strict=True):
        if record is not None or workdir is None:
            started.append(record is not None)
            continue
        try:
            mode = os.lstat(Path(record_dir(workdir)) / f".started-{step}").st_mode
        except OSError:
            started.append(False)
            continue
        started.append(mode & 0o170000 == 0o100000)  # a regular file, never a link
    return records, started


def parse_sacct(out: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``sacct --parsable2 --format=JobIDRaw,State,ExitCode,Reason`` lines, for ``ids``:
    the job's state (``CANCELLED by 0`` is CANCELLED) and its exit as a wait status."""
    found: dict[str, dict[str, Any]] = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3 or parts[0] not in ids:
            continue
        code, _, signal = parts[2].partition(":")
        raw = int(code) << 8 | int(signal) if code.isdigit() and signal.isdigit() else None
        found[parts[0]] = {"job_state": parts[1].split()[0] if parts[1] else "",
                           "exit_code": raw, "state_reason": parts[3] if len(parts) > 3 else ""}  # fmt: skip
    return found


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
        self.status_interval = float(options.get("status_interval") or 15.0)
        self.status_rounds = 0  # each asks squeue once, about every job it follows
        self.calls: dict[str, int] = {}  # SLURM commands run, by name (for benchmarks)
        self.parsed_bytes = 0  # what those commands answered
        self.files = FileWork(settings.file_timeout, name="slurm-files")
        self._known: dict[str, dict[str, Any]] = {}  # SLURM id -> its last known state
        self._asked: set[str] = set()  # ids asked about at least once (absent: gone)
        self._asked_at = -math.inf
        self._ending: dict[str, float] = {}  # ids stopped by a signal -> when first seen
        self._reasons_at = -math.inf
        self._sacct = True  # False once sacct said there is no accounting

    # -- commands -------------------------------------------------------------------------

    async def _run(self, *argv: str) -> str:
        """Run a SLURM command; its stdout. RunnerUnavailableError when the controller does
        not answer (the job is retried), RunnerError when it refuses."""
        self.calls[argv[0]] = self.calls.get(argv[0], 0) + 1
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
        self.parsed_bytes += len(out)
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
        existing = await self._find(name) if run.resumed else None
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
        """Every handle's status: from its exit record when it has one (for a step stopped
        by a signal, with SLURM's reason, asked at once), else from what SLURM last said,
        asked again when ``status_interval`` has passed."""
        if not handles:
            return {}
        parsed = [self.parse(handle) for handle in handles]
        wanted = [(self._workdir(job_id), step) for _, job_id, step in parsed]
        records, started = await self.files.call("read exit records", _read_ends, wanted)
        now = time.monotonic()
        ask: set[str] = set()
        for (slurm_id, _, _), record in zip(parsed, records, strict=True):
            if (
                record is not None
                and record.code in SIGNALLED
                and self._awaits_reason(slurm_id, now)
            ):
                ask.add(slurm_id)
        if ask and now - self._reasons_at < REASON_EVERY:
            ask = set()  # asked a moment ago: SLURM has not finished ending them yet
        elif ask:
            self._reasons_at = now
        unrecorded = {slurm_id for (slurm_id, _, _), r in zip(parsed, records, strict=True)
                      if r is None}  # fmt: skip
        if unrecorded and now - self._asked_at >= self.status_interval:
            ask |= unrecorded
            self._asked_at = now
        if ask:
            await self._ask(sorted(ask, key=int))
        followed = {slurm_id for slurm_id, _, _ in parsed}
        self._known = {i: j for i, j in self._known.items() if i in followed}
        self._ending = {i: t for i, t in self._ending.items() if i in followed}
        self._asked &= followed
        return {handle: self._current(slurm_id, record, began, now)
                for handle, (slurm_id, _, _), record, began
                in zip(handles, parsed, records, started, strict=True)}  # fmt: skip

    def _awaits_reason(self, slurm_id: str, now: float) -> bool:
        """A step stopped by a signal: SLURM's word on why is awaited for a few seconds
        (cancelled, its time limit, its memory), then its exit record is enough."""
        job = self._known.get(slurm_id)
        if job is not None and _ended(str(job.get("job_state") or "")):
            return False
        return now - self._ending.setdefault(slurm_id, now) < REASON_WAIT

    def _current(
        self, slurm_id: str, record: ExitRecord | None, started: bool, now: float
    ) -> RunStatus:
        job = self._known.get(slurm_id)
        if record is None:
            state = str((job or {}).get("job_state") or "").split(" ")[0]
            if started and (state in QUEUED_STATES or slurm_id not in self._asked):
                return RunStatus(RunState.RUNNING)  # its script began: SLURM says so later
            if slurm_id not in self._asked:  # submitted since the last round
                return RunStatus(RunState.QUEUED, reason="backend",
                                 message=f"SLURM job {slurm_id} submitted")  # fmt: skip
            return self._status_of(job, None, slurm_id)
        if job is not None and _ended(str(job.get("job_state") or "")):
            return self._status_of(job, record, slurm_id)
        if record.code in SIGNALLED and self._awaits_reason(slurm_id, now):
            return RunStatus(RunState.RUNNING)  # ending: SLURM's reason comes in a moment
        return RunStatus(RunState.FINISHED, record.code, record.message, record.oom)

    async def _ask(self, ids: list[str]) -> None:
        """One status round: squeue about ``ids`` (the appliance's own), then, for those
        that left it, sacct in one call (or scontrol each, without accounting)."""
        self.status_rounds += 1
        try:
            out = await self._run("squeue", f"--jobs={','.join(ids)}", "--states=all",
                                  "--noheader", "--format=%i|%T|%r")  # fmt: skip
        except RunnerError as exc:  # one id that slurmctld forgot is refused, not left out
            if isinstance(exc, RunnerUnavailableError) or "Invalid job id" not in str(exc):
                raise
            out = ""
        found = {}
        for line in out.splitlines():
            slurm_id, _, rest = line.strip().partition("|")
            state, _, reason = rest.partition("|")
            if slurm_id in ids:
                found[slurm_id] = {"job_state": state, "state_reason": reason}
        gone = [i for i in ids if i not in found or _ended(found[i]["job_state"])]
        if gone:
            found.update(await self._ended(gone))
        self._known.update(found)
        for slurm_id in ids:
            if slurm_id not in found:
                self._known.pop(slurm_id, None)
        self._asked.update(ids)

    async def _ended(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """How jobs that ended ended: one sacct call; scontrol each where there is no
        accounting (sacct: "accounting storage is disabled"); absent: SLURM forgot it."""
        if self._sacct:
            try:
                out = await self._run("sacct", f"--jobs={','.join(ids)}", "--allocations",
                                      "--noheader", "--parsable2",
                                      "--format=JobIDRaw,State,ExitCode,Reason")  # fmt: skip
                return parse_sacct(out, ids)
            except RunnerError as exc:
                if isinstance(exc, RunnerUnavailableError) or "accounting" not in str(exc).lower():
                    raise
                log.info("sacct: %s; asking scontrol about each ended job instead", exc)
                self._sacct = False
        ended = {}
        for slurm_id in ids:
            job = await self._scontrol(slurm_id)
            if job is not None:
                ended[slurm_id] = job
        return ended

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
