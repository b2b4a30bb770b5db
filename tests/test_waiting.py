"""Why a job waits, as the API, TES and the command line show it (no service needed)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from appliance.jobrecord import JobRecord
from appliance.tes.views import task_json
from appliance.waiting import REASONS, same, waiting
from appliance.web.representations import job_json

SINCE = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)


def job(state: str, **fields: Any) -> JobRecord:
    record: dict[str, Any] = {"_id": "j1", "service": "s", "state": state,
                              "submitted_at": SINCE, "parameters": {}, **fields}  # fmt: skip
    return cast(JobRecord, record)


def test_each_reason_has_words_and_an_unknown_one_is_refused() -> None:
    assert set(REASONS) >= {"scheduler", "no-scheduler", "starting", "staging", "runner",
                            "files", "queued", "slot", "image", "backend"}  # fmt: skip
    assert waiting("slot", SINCE) == {"reason": "slot", "since": SINCE,
                                      "message": "waiting for a free slot on its runner"}  # fmt: skip
    with pytest.raises(ValueError, match="unknown waiting reason"):
        waiting("bored", SINCE)
    stored = waiting("backend", SINCE, "SLURM job 7 is PENDING: Priority")
    assert same(stored, "backend", "SLURM job 7 is PENDING: Priority")
    assert not same(stored, "backend", "SLURM job 7 is PENDING: Resources")
    assert not same(None, "slot", "")


@pytest.mark.parametrize("state", ["ACCEPTED", "QUEUED", "UNKNOWN", "CANCELLING"])
def test_a_job_not_running_says_why_in_the_api(state: str) -> None:
    shown = job_json(job(state, waiting=waiting("slot", SINCE, "waiting for one of 4 slots")))
    assert shown["waiting"] == {"reason": "slot", "message": "waiting for one of 4 slots",
                                "since": "2026-12-06T12:00:00"}  # fmt: skip


@pytest.mark.parametrize("state", ["RUNNING", "COMPLETED", "FAILED", "ERROR"])
def test_a_running_or_ended_job_has_no_waiting_key_not_even_null(state: str) -> None:
    assert "waiting" not in job_json(job(state, waiting=waiting("slot", SINCE)))
    assert "waiting" not in job_json(job("QUEUED"))  # stored by an earlier version: none


def test_a_task_that_waits_says_why_in_its_system_logs() -> None:
    task = job("ACCEPTED", kind="task", task={"executors": []},
               waiting=waiting("scheduler", SINCE))  # fmt: skip
    [log] = task_json(task, "FULL", None)["logs"]
    assert log["system_logs"] == ["waiting since 2026-12-06T12:00:00Z: waiting for a "
                                  "scheduler to take it"]  # fmt: skip
    ran = job("RUNNING", kind="task", task={"executors": []}, waiting=None)
    assert task_json(ran, "FULL", None)["logs"][0]["system_logs"] == []
