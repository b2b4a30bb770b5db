"""The slurm backend's reading of SLURM's answers, without a cluster (tests/test_slurm.py
runs the backend against a real one)."""

from __future__ import annotations

from appliance.runners.slurm.backend import _ended, exit_code_of, parse_sacct

SACCT = """\
101|COMPLETED|0:0|None
102|FAILED|3:0|NonZeroExitCode
103|CANCELLED by 0|0:15|None
104|TIMEOUT|0:0|TimeLimit
105|OUT_OF_MEMORY|0:125|OutOfMemory
999|COMPLETED|0:0|None
"""


def test_sacct_lines_for_the_asked_jobs_only() -> None:
    found = parse_sacct(SACCT, ["101", "102", "103", "104", "105"])
    assert set(found) == {"101", "102", "103", "104", "105"}  # not 999: not asked
    assert found["103"]["job_state"] == "CANCELLED"  # "by 0" dropped
    assert exit_code_of(found["102"]["exit_code"]) == 3
    assert exit_code_of(found["103"]["exit_code"]) == 128 + 15
    assert found["104"]["state_reason"] == "TimeLimit"


def test_which_states_have_left_the_queue() -> None:
    assert not _ended("PENDING") and not _ended("RUNNING") and not _ended("COMPLETING")
    assert _ended("COMPLETED") and _ended("CANCELLED by 0") and _ended("NODE_FAIL")
    assert not _ended("")
