from __future__ import annotations

from appliance.states import FINAL, TRANSITIONS, JobState, can_move, sources_of


def test_previous_system_names_and_finished_flags() -> None:
    assert [s.value for s in JobState] == [
        "PENDING", "REJECTED", "ACCEPTED", "QUEUED", "RUNNING", "COMPLETED", "INTERRUPTED",
        "DELETED", "FAILED", "ERROR", "UNKNOWN", "CANCELLING",
    ]  # fmt: skip
    assert {s for s in JobState if s.finished} == {
        JobState.REJECTED, JobState.COMPLETED, JobState.INTERRUPTED,
        JobState.DELETED, JobState.FAILED, JobState.ERROR,
    }  # fmt: skip


def test_final_states_never_move() -> None:
    for state in FINAL:
        assert state not in TRANSITIONS
        assert not any(can_move(state, other) for other in JobState)


def test_every_non_final_state_can_end() -> None:
    for state in set(JobState) - FINAL - {JobState.PENDING}:
        assert can_move(state, JobState.INTERRUPTED) or can_move(state, JobState.DELETED)
        assert can_move(state, JobState.ERROR) or state is JobState.CANCELLING


def test_cancelling_always_ends() -> None:
    assert TRANSITIONS[JobState.CANCELLING] <= FINAL


def test_sources_of() -> None:
    assert set(sources_of(JobState.RUNNING)) == {
        JobState.ACCEPTED,
        JobState.QUEUED,
        JobState.UNKNOWN,
    }
