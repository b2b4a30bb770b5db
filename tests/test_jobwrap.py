"""The local worker's job wrapper, run as the worker runs it (``python -I -S jobwrap.py``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from appliance.jobwrap import record_dir
from appliance.worker import JOBWRAP


def wrap(workdir: Path, *argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-I", "-S", JOBWRAP, str(workdir), "--", *argv], stderr=subprocess.PIPE
    )


def record(workdir: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((Path(record_dir(workdir)) / ".exit.json").read_text())
    return data


def test_streams_and_exit_code_are_kept(tmp_path: Path) -> None:
    wrapper = wrap(tmp_path, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert wrapper.wait(10) == 0
    assert (tmp_path / "stdout").read_text() == "out\n"
    assert (tmp_path / "stderr").read_text() == "err\n"
    assert record(tmp_path) == {"exit_code": 3, "message": ""}


def test_what_an_earlier_step_left_is_replaced_not_written_through(tmp_path: Path) -> None:
    work, victim = tmp_path / "job", tmp_path / "victim.txt"
    work.mkdir()
    victim.write_text("keep me\n")
    (work / "stdout").symlink_to(victim)
    os.mkfifo(work / "stderr")  # would block an open for writing
    wrapper = wrap(work, "sh", "-c", "echo out; echo err >&2")
    assert wrapper.wait(10) == 0
    assert victim.read_text() == "keep me\n"
    assert not (work / "stdout").is_symlink() and (work / "stdout").read_text() == "out\n"
    assert (work / "stderr").read_text() == "err\n"
    assert not (work / ".exit.json").exists()  # the record is beside the job, out of its reach


def test_a_missing_or_unrunnable_program_is_recorded_not_raised(tmp_path: Path) -> None:
    wrapper = wrap(tmp_path, "no-such-program-here")
    assert wrapper.wait(10) == 127
    assert record(tmp_path)["exit_code"] == 127
    assert "no-such-program-here: command not found" in (tmp_path / "stderr").read_text()
    text = tmp_path / "data.txt"
    text.write_text("not a program\n")
    text.chmod(0o755)  # executable, but no interpreter line and not a binary
    wrapper = wrap(tmp_path, str(text))
    assert wrapper.wait(10) == 126
    assert record(tmp_path)["exit_code"] == 126
    assert wrapper.stderr is not None and wrapper.stderr.read() == b""  # no traceback


def test_sigterm_to_the_wrapper_reaches_the_command_and_is_recorded(tmp_path: Path) -> None:
    wrapper = wrap(tmp_path, "sleep", "30")
    deadline = time.monotonic() + 10
    while not (tmp_path / "stdout").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # the command has been spawned and the handler set
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(10) == 0
    assert record(tmp_path) == {"exit_code": -signal.SIGTERM, "message": ""}


def test_the_command_gets_default_signal_dispositions(tmp_path: Path) -> None:
    # Python ignores SIGPIPE; a command that inherited that would not stop in a pipe.
    wrapper = wrap(tmp_path, "grep", "SigIgn", "/proc/self/status")
    assert wrapper.wait(10) == 0
    ignored = int((tmp_path / "stdout").read_text().split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))
    assert not ignored & (1 << (signal.SIGXFSZ - 1))


def test_the_wrapper_imports_nothing_that_slows_every_job_down(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-X", "importtime", JOBWRAP, str(tmp_path), "--", "true"],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": ""},
    )  # fmt: skip
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "os" in imported  # the listing is what we think it is
    slow = {"subprocess", "signal", "json", "pathlib", "typing", "enum", "contextlib"}
    assert imported & slow == set()
