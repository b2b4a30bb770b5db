"""Jobs waiting for one of a runner's slots, oldest submission first.

A waiting job has no container yet: it is created when a slot frees, as ``docker run``
would (a batch of 200 created containers made every engine call slower, and each list of
them longer). Each one leaves a marker in its record folder (beside its directory, where
no job can write) saying that it waits, with its submission time, so that a restarted
scheduler tells a job still waiting from one whose container vanished. The marker holds
no container options: those are made again from the job's stored plan when a scheduler
adopts it (a file that chose a container's user and mounts would be a way to root for
whoever managed to write it). Not thread-safe: the docker backend calls it under its
slots lock.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.jobwrap import record_dir

WAITING_FILE = ".waiting.json"


def waiting_file(step: int) -> str:
    return WAITING_FILE if step == 0 else f".waiting-{step}.json"


def waiting_path(workdir: Path, step: int) -> Path:
    return Path(record_dir(workdir)) / waiting_file(step)


@dataclass(frozen=True)
class Waiting:
    name: str  # the container's name, which is also the job's handle
    workdir: Path
    submitted_at: float
    options: dict[str, Any] | None  # None: the container exists already (created)
    step: int = 0

    @property
    def file(self) -> Path:
        return waiting_path(self.workdir, self.step)


class WaitingJobs:
    def __init__(self) -> None:
        self._jobs: dict[str, Waiting] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)

    def add(self, job: Waiting) -> None:
        """Queue ``job``; its marker is written first."""
        if job.options is not None:
            job.file.parent.mkdir(parents=True, exist_ok=True)
            temporary = job.file.with_name(job.file.name + ".tmp")
            temporary.write_text(json.dumps({"name": job.name, "submitted_at": job.submitted_at}))
            temporary.replace(job.file)
        self._jobs[job.name] = job

    def was_waiting(self, name: str, workdir: Path, step: int = 0) -> bool:
        """Whether an earlier process left ``name`` waiting for a slot (its marker)."""
        if name in self._jobs:
            return True
        try:
            record = json.loads(waiting_path(workdir, step).read_text())
        except (OSError, ValueError):
            return False
        return isinstance(record, dict) and record.get("name") == name

    def recover(self, name: str, workdir: Path, step: int, options: dict[str, Any],
                submitted_at: float) -> bool:  # fmt: skip
        """Queue again, with ``options`` made anew from its plan, a job that an earlier
        process left waiting (False: it was not waiting)."""
        if name in self._jobs:
            return True
        if not self.was_waiting(name, workdir, step):
            return False
        self._jobs[name] = Waiting(name, workdir, submitted_at, options, step)
        return True

    def take(self, count: int) -> list[Waiting]:
        """Remove and return the ``count`` oldest submissions."""
        chosen = sorted(self._jobs.values(), key=lambda j: (j.submitted_at, j.name))[:count]
        for job in chosen:
            del self._jobs[job.name]
        return chosen

    def drop(self, name: str, workdir: Path, step: int = 0) -> bool:
        """Forget a waiting job (cancelled); False if it was not waiting."""
        found = self._jobs.pop(name, None) is not None or waiting_path(workdir, step).exists()
        forget(workdir, step)
        return found


def forget(workdir: Path, step: int = 0) -> None:
    """The job has its container now (or never will): remove its options file."""
    with contextlib.suppress(OSError):
        os.unlink(waiting_path(workdir, step))
