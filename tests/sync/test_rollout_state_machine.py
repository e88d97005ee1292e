"""The rollout state machine on its own (no server): stages pass at their success threshold,
the rollout pauses at an error threshold or a stage that finished short, resuming accepts the
failures so far, and the operator's events apply only in the states they belong to."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_server.rollout_state import (
    RolloutEvent,
    RolloutPosition,
    RolloutRefused,
    RolloutState,
    StageTally,
    Thresholds,
    parse_stages,
    stage_sizes,
    transition,
)

RUNNING = RolloutPosition(RolloutState.RUNNING)


def _progress(
    position: RolloutPosition, tallies: list[StageTally], success: float = 100, error: float = 50
) -> RolloutPosition:
    return transition(position, RolloutEvent.PROGRESS, tallies, Thresholds(success, error))


def test_the_next_stage_starts_when_the_test_group_met_its_threshold() -> None:
    tallies = [StageTally(1, succeeded=1), StageTally(2)]
    assert _progress(RUNNING, tallies) == RolloutPosition(RolloutState.RUNNING, stage=1)


def test_the_rollout_is_done_when_the_last_stage_passed_and_nothing_is_in_flight() -> None:
    tallies = [StageTally(1, succeeded=1), StageTally(4, succeeded=3)]
    assert _progress(RUNNING, tallies, success=75).state is RolloutState.RUNNING
    done = _progress(RUNNING, [*tallies[:1], StageTally(4, succeeded=4)], success=75)
    assert (done.state, done.stage) == (RolloutState.DONE, 1)


def test_a_failed_test_computer_pauses_at_the_error_threshold_with_the_reason() -> None:
    paused = _progress(RUNNING, [StageTally(2, failed=1), StageTally(3)])
    assert (paused.state, paused.stage) == (RolloutState.PAUSED, 0)
    assert paused.reason == "test group: 1 of 2 failed (50%), error threshold 50%"


def test_a_stage_that_finished_short_pauses() -> None:
    paused = _progress(RUNNING, [StageTally(4, succeeded=3, failed=1), StageTally(3)], error=60)
    assert paused.state is RolloutState.PAUSED
    assert paused.reason.startswith("test group finished below its success threshold: 3 of 4")


def test_resume_accepts_the_failures_so_far_and_lets_a_finished_stage_pass() -> None:
    tallies = [StageTally(2, succeeded=1, failed=1), StageTally(3)]
    paused = _progress(RUNNING, tallies)
    resumed = transition(paused, RolloutEvent.RESUME, tallies, Thresholds(100, 50))
    assert (resumed.state, resumed.stage) == (RolloutState.RUNNING, 1)
    again = _progress(resumed, [tallies[0], StageTally(3, failed=1)], error=30)
    assert again.reason == "stage 1: 1 of 3 failed (33.3%), error threshold 30%"


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (RolloutState.RUNNING, RolloutEvent.RESUME),
        (RolloutState.PAUSED, RolloutEvent.PAUSE),
        (RolloutState.DONE, RolloutEvent.CANCEL),
        (RolloutState.CANCELLED, RolloutEvent.RESUME),
    ],
)
def test_an_event_out_of_place_is_refused(state: RolloutState, event: RolloutEvent) -> None:
    with pytest.raises(RolloutRefused):
        transition(RolloutPosition(state), event, [StageTally(1)], Thresholds(100, 50))


def test_stage_reaches_are_cumulative_and_end_with_every_target() -> None:
    assert stage_sizes(parse_stages(["30%", "60%", "100%"]), 10) == [3, 3, 4]
    assert stage_sizes(parse_stages(["1", "3"]), 3) == [1, 2]
    with pytest.raises(ValueError, match="end with 100%"):
        stage_sizes(parse_stages(["50%"]), 4)
    with pytest.raises(ValueError, match="not a count"):
        parse_stages(["half"])


tallies_strategy = st.lists(
    st.integers(0, 6).flatmap(
        lambda n: st.tuples(st.just(n), st.integers(0, n)).flatmap(
            lambda ns: st.builds(
                StageTally, st.just(ns[0]), st.just(ns[1]), st.integers(0, ns[0] - ns[1])
            )
        )
    ),
    min_size=1,
    max_size=4,
)


@given(
    tallies=tallies_strategy,
    success=st.integers(0, 100),
    error=st.integers(1, 100),
    events=st.lists(st.sampled_from(list(RolloutEvent)), max_size=6),
)
def test_no_stage_is_passed_short_of_its_threshold_unless_resumed_past(
    tallies: list[StageTally], success: int, error: int, events: list[RolloutEvent]
) -> None:
    thresholds = Thresholds(success, error)
    position = RUNNING
    for event in [RolloutEvent.PROGRESS, *events]:
        try:
            after = transition(position, event, tallies, thresholds)
        except RolloutRefused:
            continue
        assert after.stage >= position.stage
        for index in range(position.stage, after.stage):
            tally = tallies[index]
            met = tally.share(tally.succeeded) >= success
            assert met or (event is RolloutEvent.RESUME and tally.finished)
        if after.state is RolloutState.DONE:
            assert after.stage == len(tallies) - 1
            assert all(t.finished for t in tallies)
        if after.state is RolloutState.PAUSED and event is RolloutEvent.PROGRESS:
            assert after.reason
        if position.state.finished:
            assert after == position
        position = after
