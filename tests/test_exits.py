"""The one exit-code policy: the table in its docstring is the test table."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest

from appliance import exits
from appliance.exits import (
    ExitRecord,
    job_end,
    read_exit_record,
    record_dir,
    signal_of,
    write_exit_record,
)
from appliance.states import JobState


def docstring_rows() -> list[tuple[int | None, bool | None, bool | None, bool | None, JobState]]:
    """The policy table of ``appliance.exits``, parsed: ``*`` is any (None)."""
    assert exits.__doc__ is not None
    rows = []
    for line in exits.__doc__.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) != 5 or cells[0] in ("exit code", "") or set(cells[0]) <= {"-", " "}:
            continue
        code = None if cells[0] == "none" else int(cells[0])

        def flag(cell: str) -> bool | None:
            return None if cell == "*" else cell == "yes"

        rows.append((code, flag(cells[1]), flag(cells[2]), flag(cells[3]), JobState(cells[4])))
    return rows


ROWS = docstring_rows()


def test_the_docstring_table_is_read() -> None:
    assert len(ROWS) >= 15
    assert {row[4] for row in ROWS} == {JobState.COMPLETED, JobState.INTERRUPTED, JobState.FAILED,
                                        JobState.ERROR}  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=lambda r: "-".join(map(str, r)))
def test_the_policy_agrees_with_its_docstring(
    row: tuple[int | None, bool | None, bool | None, bool | None, JobState],
) -> None:
    code, cancelled, timed_out, oom = row[:4]
    expected = row[4]
    for c in [cancelled] if cancelled is not None else [False, True]:
        for t in [timed_out] if timed_out is not None else [False, True]:
            for o in [oom] if oom is not None else [False, True]:
                record = None if code is None else ExitRecord(code, oom=o)
                state, _ = job_end(record, cancelled=c, timed_out=t, time_limit=5)
                assert state is expected, (code, c, t, o)


def test_a_signal_is_the_same_in_either_form() -> None:
    for number in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGSEGV):
        assert signal_of(-number) == signal_of(128 + number) == number
        negative = job_end(ExitRecord(-number))
        shell = job_end(ExitRecord(128 + number))
        assert negative[0] is shell[0] is JobState.FAILED
        assert negative[1].replace(str(-number), "N") == shell[1].replace(str(128 + number), "N")
        assert signal.Signals(number).name in negative[1] and "killed by the signal" in shell[1]
    assert signal_of(0) is None and signal_of(1) is None and signal_of(127) is None


def test_messages_say_why() -> None:
    assert job_end(None, lost="its container is gone") == (
        JobState.ERROR, "the runner lost the job: its container is gone")  # fmt: skip
    assert "time limit of 5 s" in job_end(ExitRecord(137), timed_out=True, time_limit=5)[1]
    assert "out of memory" in job_end(ExitRecord(137, oom=True))[1]
    assert job_end(ExitRecord(143), cancelled=True) == (JobState.INTERRUPTED, "cancelled")
    assert job_end(ExitRecord(143, "cancelled before it started"), cancelled=True)[1] == (
        "cancelled before it started")  # fmt: skip
    assert job_end(ExitRecord(127, "tool: command not found"))[1] == "tool: command not found"


def test_records_round_trip_per_step(tmp_path: Path) -> None:
    write_exit_record(tmp_path, 3)
    write_exit_record(tmp_path, 137, "killed", step=2, oom=True)
    assert read_exit_record(tmp_path) == ExitRecord(3)
    assert read_exit_record(tmp_path, 2) == ExitRecord(137, "killed", True)
    assert read_exit_record(tmp_path, 1) is None


def test_a_record_the_job_replaced_is_not_trusted(tmp_path: Path) -> None:
    records = Path(record_dir(tmp_path))
    records.mkdir(parents=True)
    (tmp_path / "elsewhere.json").write_text('{"exit_code": 0}')
    os.symlink(tmp_path / "elsewhere.json", records / ".exit.json")
    assert read_exit_record(tmp_path) is None  # a symlink is not followed
    os.mkfifo(records / ".exit-1.json")
    assert read_exit_record(tmp_path, 1) is None  # a FIFO does not block the reader


def test_an_exit_255_is_the_engines_only_for_a_container_running_when_it_went() -> None:
    from appliance.runners.docker.engineapi import lost_by_engine

    def state(code: int, started: str, finished: str, error: str = "") -> dict[str, object]:
        return {"ExitCode": code, "Error": error, "StartedAt": f"2026-12-07T18:50:{started}Z",
                "FinishedAt": f"2026-12-07T18:50:{finished}Z"}  # fmt: skip

    went = datetime(2026, 12, 7, 18, 50, 35, tzinfo=UTC).timestamp()
    # seen by the engine's restart (what CI saw: started 34.05, the engine gone at 35.07)
    assert lost_by_engine(state(255, "34.046256692", "35.668953662"), went)
    never_ended = {**state(255, "34.0", "36.0"), "FinishedAt": "0001-01-01T00:00:00Z"}
    assert lost_by_engine(never_ended, went)
    assert not lost_by_engine(state(255, "30.0", "31.0"), went)  # the tool's own, before
    assert not lost_by_engine(state(255, "36.0", "37.0"), went)  # started after it came back
    assert not lost_by_engine(state(255, "34.0", "36.0"), None)  # this process never lost it
    assert not lost_by_engine(state(143, "34.0", "36.0"), went)  # a signal says so itself
    assert not lost_by_engine(state(255, "34.0", "36.0", error="shim gone"), went)  # its word
