"""Jobs waiting for one of a runner's slots, oldest submission first.

A waiting job has no container yet: it is created when a slot frees, as ``docker run``
would (a batch of 200 created containers made every engine call slower, and each list of
them longer). Each one's container options are kept in its record folder (beside its
directory, where no job can write: options read back from a place a job could write
would let it choose its next step's mounts), so that a restarted scheduler finds the
queue again from the jobs it follows. Not thread-safe: the
docker backend calls it under its slots lock.
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
        """Queue ``job``; its options are written to its directory first."""
        if job.options is not None:
            job.file.parent.mkdir(parents=True, exist_ok=True)
            temporary = job.file.with_name(job.file.name + ".tmp")
            record = {"name": job.name, "submitted_at": job.submitted_at, "options": job.options}
            temporary.write_text(json.dumps(record))
            temporary.replace(job.file)
        self._jobs[job.name] = job

    def recover(self, name: str, workdir: Path, step: int = 0) -> bool:
        """Queue a job that an earlier process queued (False: it was not waiting)."""
        if name in self._jobs:
            return True
        try:
            record = json.loads(waiting_path(workdir, step).read_text())
        except (OSError, ValueError):
            return False
        if record.get("name") != name or not isinstance(record.get("options"), dict):
            return False
        self._jobs[name] = Waiting(name, workdir, float(record["submitted_at"]),
                                   record["options"], step)  # fmt: skip
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
