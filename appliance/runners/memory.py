"""An in-memory backend for fast scheduler tests: it runs a few simulated programs.

``true``, ``false``, ``echo ARGS``, ``sleep SECONDS``, ``touch FILE``, ``exit N``,
``printenv``; any other program "is not found" (exit 127), like a shell would say.
Output goes to the step's stdout and stderr files in the job's directory, and each step's
end to its exit record, like the real backends. With the option ``runs_steps`` it runs a
whole multi-step plan in one submission (as a cluster backend might), else one step.
It records every submit (``submissions``, repeats included) and every run it started
(``runs``), so tests can count starts. Its simulated programs write their files in a
thread, as a job's own process would; it reads exit records off the loop with a time
limit (``appliance.offloop``), as the real backends do.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.aio import wait_event
from appliance.errors import RunnerUnavailableError
from appliance.exits import read_exit_records, write_exit_record
from appliance.offloop import FileWork
from appliance.plan import Step
from appliance.runners.base import RunState, RunStatus, StepRun
from appliance.volumes import Volumes

if TYPE_CHECKING:
    from appliance.runners.config import RunnerConfig
    from appliance.settings import Settings


class MemoryBackend:
    def __init__(
        self, volumes: Volumes, start_delay: float = 0.0, runs_steps: bool = False,
        file_timeout: float = 30.0,
    ) -> None:  # fmt: skip
        self.volumes = volumes
        self.files = FileWork(file_timeout, name="memory-files")
        self.start_delay = start_delay
        self.runs_steps = runs_steps
        self.submit_delay = 0.0  # tests: a slow engine
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.runs_of: dict[str, StepRun] = {}
        self.started: set[str] = set()
        self.submissions: list[str] = []  # every submit call
        self.runs: list[str] = []  # every run actually started (a repeated submit is not)
        self.reachable = True
        self.image_ids: dict[str, str] = {}  # image_id's answers, by name (tests)
        self._images_changed = asyncio.Event()

    async def image_id(self, image: str) -> str | None:
        """A made-up id per image name (tests change it to stand for a rebuilt image)."""
        self._check()
        return self.image_ids.get(image, f"sha256:memory-{image}")

    def rebuild(self, image: str, image_id: str) -> None:
        """Tests: ``image`` is another image now, and the engine says so."""
        self.image_ids[image] = image_id
        self._images_changed.set()

    async def images_changed(self, timeout: float) -> None:
        await wait_event(self._images_changed, timeout)
        self._images_changed.clear()

    async def submit(self, run: StepRun) -> str:
        self._check()
        handle = run.job_id + run.handle_suffix()
        self.submissions.append(handle)
        if self.submit_delay:
            await asyncio.sleep(self.submit_delay)
        if handle in self.tasks:
            return handle
        self.runs_of[handle] = run
        self.runs.append(handle)
        self.tasks[handle] = asyncio.create_task(self._run(handle, run))
        return handle

    async def _run(self, handle: str, run: StepRun) -> None:
        workdir = self.volumes.path(run.plan.work)
        last = len(run.plan.steps) - 1 if self.runs_steps else run.step
        for index in range(run.step, last + 1):
            step = run.plan.steps[index]
            out, err = workdir / step.stdout, workdir / step.stderr
            await asyncio.to_thread(_fresh, out, err)
            try:
                await asyncio.sleep(self.start_delay)
                self.started.add(handle)
                code = await self._program(step, workdir, out, err)
            except asyncio.CancelledError:
                await asyncio.to_thread(write_exit_record, workdir, -signal.SIGTERM, step=index)
                return
            await asyncio.to_thread(write_exit_record, workdir, code, step=index)
            if code != 0 and step.stop_on_failure:
                return

    async def _program(self, step: Step, workdir: Path, out: Path, err: Path) -> int:
        program, *args = step.argv
        if program == "env" and args:  # env PROGRAM ARGS, as the real backends run it
            program, *args = args
        if program == "true":
            return 0
        if program == "false":
            return 1
        if program == "exit":
            return int(args[0])
        if program == "echo":
            await asyncio.to_thread(out.write_text, " ".join(args) + "\n")
            return 0
        if program == "sleep":
            await asyncio.sleep(float(args[0]))
            return 0
        if program in ("printenv", "env"):
            await asyncio.to_thread(out.write_text,
                                    "".join(f"{k}={v}\n" for k, v in step.env.items()))  # fmt: skip
            return 0
        if program == "touch":
            await asyncio.to_thread(_fresh, *(workdir / name for name in args))
            return 0
        await asyncio.to_thread(err.write_text, f"{program}: not found\n")
        return 127

    async def status(self, handles: Sequence[str]) -> dict[str, RunStatus]:
        self._check()
        result = {}
        for handle in handles:
            task = self.tasks.get(handle)
            if task is None:
                result[handle] = RunStatus(RunState.LOST, message="unknown to this backend")
            elif task.done():
                run = self.runs_of[handle]
                workdir = self.volumes.path(run.plan.work)
                wanted: list[tuple[Path | None, int]] = [
                    (workdir, i) for i in range(run.step, len(run.plan.steps))
                ]
                records = await self.files.call("read exit records", read_exit_records, wanted)
                ended = [r for r in records if r is not None]
                last = ended[-1] if ended else None
                result[handle] = RunStatus(RunState.FINISHED, last.code if last else -1,
                                           last.message if last else "")  # fmt: skip
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
        self.files.close()

    def _check(self) -> None:
        if not self.reachable:
            raise RunnerUnavailableError("the memory backend is switched off")


def _fresh(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")


def create(config: RunnerConfig, settings: Settings) -> MemoryBackend:
    options = config.options
    return MemoryBackend(Volumes.local(settings), float(options.get("start_delay") or 0.0),
                         bool(options.get("runs_steps")), settings.file_timeout)  # fmt: skip
