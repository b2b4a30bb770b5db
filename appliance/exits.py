"""How a job ended: exit records, and the one policy that turns them into job states.

Every backend records a step's end the same way, with ``write_exit_record`` (a file in
the job's record folder beside its directory, out of the job's reach, written atomically; the local pool's job wrapper writes it itself,
so it survives restarts of every process). ``job_end`` is the only place that decides a
job's final state. A signal is the same signal whichever way a backend reports it:
``-N`` (Python, the local pool) and ``128+N`` (shells, Docker, Kubernetes, SLURM).

The policy, first matching row wins (``sig`` is any signal, in either form; ``*`` is any):

    exit code  | cancelled | timed out | out of memory | state
    none       | *         | *         | *             | ERROR
    0          | *         | *         | *             | COMPLETED
    1          | yes       | no        | no            | INTERRUPTED
    143        | yes       | no        | no            | INTERRUPTED
    -15        | yes       | no        | no            | INTERRUPTED
    137        | no        | yes       | no            | FAILED
    -9         | no        | yes       | no            | FAILED
    1          | no        | yes       | no            | FAILED
    137        | no        | no        | yes           | FAILED
    126        | no        | no        | no            | ERROR
    127        | no        | no        | no            | ERROR
    137        | no        | no        | no            | FAILED
    -9         | no        | no        | no            | FAILED
    143        | no        | no        | no            | FAILED
    1          | no        | no        | no            | FAILED
    2          | no        | no        | no            | FAILED

In words: no record means the runner lost the job (ERROR); 0 is COMPLETED whatever else
happened; a job stopped after a cancel request is INTERRUPTED; one stopped for its time
limit, or killed for memory, FAILED with that reason; 126 and 127 (cannot execute, not
found) are ERROR; any other code, a signal from outside included, is FAILED, and the
message names the signal.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.jobwrap import EXIT_RECORD, exit_record_name, record_dir, write_exit_record
from appliance.states import JobState

EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127
SIGNAL_BASE = 128

__all__ = ["EXIT_RECORD", "ExitRecord", "exit_record_name", "job_end", "read_exit_record",
           "record_dir", "signal_of", "write_exit_record"]  # fmt: skip


@dataclass(frozen=True)
class ExitRecord:
    code: int
    message: str = ""
    oom: bool = False


def read_exit_record(workdir: Path, step: int = 0) -> ExitRecord | None:
    """The step's exit record, or None if there is none (or it is not a regular file of
    sane size: the record folder is out of a job's reach, but checked all the same)."""
    path = Path(record_dir(workdir)) / exit_record_name(step)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if info.st_mode & 61440 != 32768 or info.st_size > 65536:
            return None
        data: Any = json.loads(os.read(fd, 65536))
        return ExitRecord(int(data["exit_code"]), str(data.get("message", "")),
                          bool(data.get("oom", False)))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None
    finally:
        os.close(fd)


def read_exit_records(wanted: list[tuple[Path | None, int]]) -> list[ExitRecord | None]:
    """``read_exit_record`` of each (work directory, step): one trip off the event loop
    for a whole status round (``appliance.offloop``)."""
    return [None if workdir is None else read_exit_record(workdir, step)
            for workdir, step in wanted]  # fmt: skip


def signal_of(code: int) -> int | None:
    """The signal that ended a process, from either way of reporting it; None if none."""
    if code < 0:
        return -code
    if SIGNAL_BASE < code <= SIGNAL_BASE + 64:
        return code - SIGNAL_BASE
    return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def job_end(
    record: ExitRecord | None,
    *,
    cancelled: bool = False,
    timed_out: bool = False,
    time_limit: float | None = None,
    lost: str = "",
) -> tuple[JobState, str]:
    """The final state of a job and the reason shown to its user (see the table above)."""
    if record is None:
        return (
            JobState.ERROR,
            f"the runner lost the job: {lost}" if lost else "the runner lost the job",
        )
    code, message = record.code, record.message
    if code == 0:
        return JobState.COMPLETED, message
    if cancelled and not timed_out:
        return JobState.INTERRUPTED, message or "cancelled"
    if timed_out:
        limit = f" of {time_limit:g} s" if time_limit else ""
        return JobState.FAILED, f"the job exceeded its time limit{limit}"
    if record.oom:
        return JobState.FAILED, message or "the job ran out of memory and was killed"
    if code == EXIT_CANNOT_EXECUTE:
        return JobState.ERROR, message or "the program could not be executed"
    if code == EXIT_NOT_FOUND:
        return JobState.ERROR, message or "the program was not found"
    number = signal_of(code)
    if number is not None and not message:
        message = (f"killed by the signal {_signal_name(number)} (exit code {code}) from "
                   "outside the job: was its runner stopped?")  # fmt: skip
    return JobState.FAILED, message
