"""``appliance run``: one job of a service, here and now, for the service's author.

The command is built exactly as a job's would be (the same validation, planner and plan),
and run once with ``docker run`` in the service's image with the docker runner's
isolation (no network, no capabilities, read-only root, a non-root user, the service's
limits), in a scratch folder laid out like the appliance's volumes. No database, web
process, scheduler or bundle is needed: only the image in the local engine.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import CommandError, FormErrors
from appliance.forms import FileRef, RawValue, validate
from appliance.jobdirs import collect_outputs, make_job_dir, prepare_step
from appliance.model import Service
from appliance.plan import UPLOADS, Location, Plan
from appliance.planning import Planned, Planner
from appliance.runners.base import StepRun
from appliance.runners.config import RunnerConfig
from appliance.runners.docker.containers import DEFAULT_USER, parse_user
from appliance.runners.slurm.docker_args import docker_argv
from appliance.store import new_id
from appliance.volumes import Volumes


@dataclass(frozen=True)
class TryResult:
    workdir: Path
    plan: Plan
    exit_code: int
    argv: list[str]


def _stage(scratch: Path, files: list[tuple[str, str]]) -> dict[str, list[RawValue]]:
    raw: dict[str, list[RawValue]] = {}
    for name, value in files:
        source = Path(value).resolve()
        if not source.is_file():
            raise CommandError(f"--file {name}={value}: no such file")
        file_id = new_id()
        shutil.copyfile(source, scratch / "uploads" / file_id)
        path = scratch / "uploads" / file_id
        staged = FileRef(file_id, path, source.name, location=Location(UPLOADS, file_id))
        raw.setdefault(name, []).append(staged)
    return raw


def try_run(service: Service, runners: Mapping[str, RunnerConfig], environ: Mapping[str, str],
            sets: list[tuple[str, str]], files: list[tuple[str, str]],
            scratch: Path | None = None) -> TryResult:  # fmt: skip
    """Run one job of ``service``; raises FormErrors for invalid values, CommandError if it
    cannot be planned or run."""
    scratch = scratch or Path(tempfile.mkdtemp(prefix=f"appliance-run-{service.id}-"))
    for volume in ("jobs", "uploads"):
        (scratch / volume).mkdir(parents=True, exist_ok=True)
    raw = _stage(scratch, files)
    for name, value in sets:
        raw.setdefault(name, []).append(value)
    values = asyncio.run(validate(service, raw))
    job_id = new_id()
    planned = Planner(runners, environ).plan(job_id, service, values)
    if not isinstance(planned, Planned):
        raise CommandError(f"no job can be made: {planned.reason}")
    plan = planned.plan
    volumes = Volumes({"jobs": scratch / "jobs", "uploads": scratch / "uploads"})
    workdir = volumes.path(plan.work)
    make_job_dir(workdir)
    code = 0
    argv: list[str] = []
    for index, step in enumerate(plan.steps):
        prepare_step(workdir, plan, index)
        run = StepRun(job_id, plan, index, service.id, time.time())
        argv = docker_argv(run, plan.resources, name=f"appliance-run-{job_id}-{index}",
                           instance="appliance-run", volumes=volumes, tmp_size="64m")  # fmt: skip
        argv.insert(2, "--rm")
        _give_to_job_user(workdir, plan.resources.user or DEFAULT_USER)
        with (workdir / step.stdout).open("wb") as out, (workdir / step.stderr).open("wb") as err:
            try:
                code = subprocess.run(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                      timeout=plan.resources.time_limit).returncode  # fmt: skip
            except subprocess.TimeoutExpired:
                subprocess.run(["docker", "rm", "-f", f"appliance-run-{job_id}-{index}"],
                               capture_output=True)  # fmt: skip
                code = 124
        if code != 0 and step.stop_on_failure:
            break
    return TryResult(workdir, plan, code, argv)


def _give_to_job_user(workdir: Path, user: str) -> None:
    """The container's user (1000 unless the service says) writes its outputs here."""
    owner = parse_user(user)
    if owner is not None and os.geteuid() == 0:
        for path in (workdir, *workdir.rglob("*")):
            os.chown(path, *owner, follow_symlinks=False)
    else:
        for path in (workdir, *workdir.rglob("*")):
            path.chmod(0o777 if path.is_dir() else 0o666)


def print_result(result: TryResult) -> None:
    for step in result.plan.steps[:1]:
        for stream in (step.stdout, step.stderr):
            text = (result.workdir / stream).read_text(errors="replace")
            print(f"--- {stream} ---")
            print(text, end="" if text.endswith("\n") or not text else "\n")
    print(f"--- exit code {result.exit_code} ---")
    for output in collect_outputs(result.plan, result.workdir):
        size = (result.workdir / output.path).stat().st_size
        print(f"{output.output_id}: {output.path} ({size} bytes, {output.media_type})")
    print(f"the job's folder: {result.workdir}", file=sys.stderr)


def form_errors_text(exc: FormErrors) -> str:
    return "\n".join(f"{e.parameter}: {e.message}" for e in exc.errors)
