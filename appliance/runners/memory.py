"""An in-memory backend for fast scheduler tests: it runs a few simulated programs.

``true``, ``false``, ``echo ARGS``, ``sleep SECONDS``, ``touch FILE``, ``exit N``,
``printenv``; any
other program "is not found" (exit 127), like a shell would say. Output goes to files in
the job's directory, like the real backends.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.jobdirs import read_exit_record, write_exit_record
from appliance.runners.base import JobSpec, RunState, RunStatus

if TYPE_CHECKING:
    from appliance.runnerconf import RunnerConfig
    from appliance.settings import Settings


class MemoryBackend:
    def __init__(self, start_delay: float = 0.0) -> None:
        self.start_delay = start_delay
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.workdirs: dict[str, Path] = {}
        self.started: set[str] = set()
        self.submissions: list[str] = []  # every submit call
        self.runs: list[str] = []  # every job actually started (a repeated submit is not)
        self.reachable = True

    async def submit(self, spec: JobSpec) -> str:
        self._check()
        handle = spec.job_id
        self.submissions.append(handle)
        if handle in self.tasks:
            return handle
        self.workdirs[handle] = spec.workdir
        self.runs.append(handle)
        self.tasks[handle] = asyncio.create_task(self._run(handle, spec))
        return handle

    async def _run(self, handle: str, spec: JobSpec) -> None:
        out = spec.workdir / "stdout"
        err = spec.workdir / "stderr"
        out.write_text("")
        err.write_text("")
        try:
            await asyncio.sleep(self.start_delay)
            self.started.add(handle)
            code = await self._program(spec, out, err)
        except asyncio.CancelledError:
            code = -signal.SIGTERM
        write_exit_record(spec.workdir, code)

    async def _program(self, spec: JobSpec, out: Path, err: Path) -> int:
        program, *args = spec.argv
        if program == "env" and args:  # env PROGRAM ARGS, as the real backends run it
            program, *args = args
        if program == "true":
            return 0
        if program == "false":
            return 1
        if program == "exit":
            return int(args[0])
        if program == "echo":
            out.write_text(" ".join(args) + "\n")
            return 0
        if program == "sleep":
            await asyncio.sleep(float(args[0]))
            return 0
        if program in ("printenv", "env"):
            out.write_text("".join(f"{k}={v}\n" for k, v in spec.env.items()))
            return 0
        if program == "touch":
            for name in args:
                (spec.workdir / name).write_text("")
            return 0
        err.write_text(f"{program}: not found\n")
        return 127

    async def status(self, handles: Sequence[str]) -> dict[str, RunStatus]:
        self._check()
        result = {}
        for handle in handles:
            task = self.tasks.get(handle)
            if task is None:
                result[handle] = RunStatus(RunState.LOST, message="unknown to this backend")
            elif task.done():
                record = read_exit_record(self.workdirs[handle])
                code = record[0] if record else -1
                result[handle] = RunStatus(RunState.FINISHED, code)
            elif handle in self.started:
                result[handle] = RunStatus(RunState.RUNNING)
            else:
                result[handle] = RunStatus(RunState.QUEUED)
        return result

    async def cancel(self, handle: str) -> None:
        self._check()
        task = self.tasks.get(handle)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        for task in self.tasks.values():
            task.cancel()

    def _check(self) -> None:
        if not self.reachable:
            from appliance.errors import RunnerUnavailableError

            raise RunnerUnavailableError("the memory backend is switched off")


def create(config: RunnerConfig, settings: Settings) -> MemoryBackend:
    return MemoryBackend(float(config.options.get("start_delay", 0.0)))
