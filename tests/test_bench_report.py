"""The benchmark report names the parameters of the run that made it."""

from __future__ import annotations

from typing import Any

from bench import report


def results(**settings: Any) -> dict[str, Any]:
    samples = {"appliance": [1.0, 2.0], "slivka": [2.0, 3.0], "floor": [0.5]}
    metrics = ("batch_docker_s", "stored_list_s", "submissions_per_s")
    return {"settings": settings, "samples": {m: samples for m in metrics}}


def test_labels_state_the_runs_own_numbers() -> None:
    text = report.table(results(batch=40, stored=10000, clients=8))
    assert "40 trivial docker jobs at once" in text
    assert "filtered job list with 10,000 jobs stored" in text
    assert "submissions/s, 8 clients" in text
    assert "200" not in text and "100,000" not in text


def test_a_run_saved_without_its_settings_keeps_the_old_labels() -> None:
    text = report.table({"samples": results()["samples"]})
    assert "200 trivial docker jobs at once" in text and "100,000 jobs stored" in text
