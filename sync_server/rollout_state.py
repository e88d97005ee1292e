"""The rollout state machine, pure: a rollout's position (state, current stage, why it
paused) and the one function, `transition`, that moves it on an event.

Stage 0 is the test group; stages 1.. take the remaining targets. A stage is judged by its
tally (members, succeeded, failed). The rollout moves to the next stage once the current one
met its success threshold; it pauses by itself when any started stage's failures reach the
error threshold (failures an operator already acknowledged by resuming do not count again),
or when the current stage finished below its success threshold. Resuming acknowledges the
failures so far and lets the current stage through whatever its success share if it had
finished when the operator resumed. The rollout is
done when the last stage met its threshold and every started target has finished. Nothing
here touches the database: `sync_server.rollouts` feeds it tallies and applies its answer.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace


class RolloutState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"

    @property
    def finished(self) -> bool:
        return self in (RolloutState.CANCELLED, RolloutState.DONE)


class RolloutEvent(enum.StrEnum):
    PROGRESS = "progress"  # a computer checked in or reported: re-judge the stages
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"


class RolloutRefused(Exception):
    """The event does not apply in the rollout's state (pause a paused rollout...)."""


def stage_name(index: int) -> str:
    return "test group" if index == 0 else f"stage {index}"


@dataclass(frozen=True)
class StageSpec:
    """One stage's cumulative reach: a count of the remaining targets, or a percent."""

    value: int
    percent: bool

    def __str__(self) -> str:
        return f"{self.value}%" if self.percent else str(self.value)

    def reach(self, remaining: int) -> int:
        if self.percent:
            return min(remaining, math.ceil(self.value * remaining / 100))
        return min(remaining, self.value)


_STAGE = re.compile(r"\s*(\d+)\s*(%?)\s*")


def parse_stages(texts: Sequence[str]) -> list[StageSpec]:
    """`["30%", "60%", "100%"]` or `["2", "5"]`; ValueError names what is wrong."""
    specs = []
    for text in texts:
        match = _STAGE.fullmatch(text)
        if match is None:
            raise ValueError(f"stage {text!r} is not a count (3) or a percent (30%)")
        spec = StageSpec(int(match.group(1)), bool(match.group(2)))
        if spec.value <= 0 or (spec.percent and spec.value > 100):
            raise ValueError(f"stage {text!r}: a count above 0, or a percent from 1% to 100%")
        specs.append(spec)
    if not specs:
        raise ValueError("give at least one stage")
    return specs


def stage_sizes(specs: Sequence[StageSpec], remaining: int) -> list[int]:
    """How many of `remaining` targets each stage adds. ValueError when the reaches do not
    grow or the last stage leaves targets out."""
    reaches = [spec.reach(remaining) for spec in specs]
    for before, spec, after in zip([0, *reaches], specs, reaches, strict=False):
        if after < before:
            raise ValueError(f"stage {spec} reaches fewer computers than the stage before it")
    if reaches[-1] < remaining:
        raise ValueError(
            f"the last stage ({specs[-1]}) reaches {reaches[-1]} of the {remaining} "
            "remaining computers; end with 100% (or a count of at least "
            f"{remaining})"
        )
    return [after - before for before, after in zip([0, *reaches], reaches, strict=False)]


@dataclass(frozen=True)
class Thresholds:
    success: float  # percent of a stage's members that must succeed before the next starts
    error: float  # percent of a stage's members whose failure pauses the rollout


@dataclass(frozen=True)
class StageTally:
    members: int
    succeeded: int = 0
    failed: int = 0

    @property
    def finished(self) -> bool:
        return self.succeeded + self.failed >= self.members

    def share(self, count: int) -> float:
        return 100.0 if self.members == 0 else 100.0 * count / self.members


@dataclass(frozen=True)
class RolloutPosition:
    state: RolloutState
    stage: int = 0
    reason: str = ""
    acknowledged: tuple[int, ...] = ()  # failures per stage the operator resumed past
    override: bool = False  # resumed after the current stage finished: it may pass

    def acknowledged_in(self, stage: int) -> int:
        return self.acknowledged[stage] if stage < len(self.acknowledged) else 0


def _percent(value: float) -> str:
    return f"{value:.0f}%" if value == int(value) else f"{value:.1f}%"


def _error_reason(
    position: RolloutPosition, tallies: Sequence[StageTally], thresholds: Thresholds
) -> str | None:
    for index in range(min(position.stage + 1, len(tallies))):
        tally = tallies[index]
        if tally.failed > position.acknowledged_in(index) and (
            tally.share(tally.failed) >= thresholds.error
        ):
            return (
                f"{stage_name(index)}: {tally.failed} of {tally.members} failed "
                f"({_percent(tally.share(tally.failed))}), error threshold "
                f"{_percent(thresholds.error)}"
            )
    return None


def _progress(
    position: RolloutPosition, tallies: Sequence[StageTally], thresholds: Thresholds
) -> RolloutPosition:
    while True:
        if (reason := _error_reason(position, tallies, thresholds)) is not None:
            return replace(position, state=RolloutState.PAUSED, reason=reason)
        tally = tallies[position.stage]
        met = tally.share(tally.succeeded) >= thresholds.success
        if not met and not (position.override and tally.finished):
            if tally.finished:
                return replace(
                    position,
                    state=RolloutState.PAUSED,
                    reason=(
                        f"{stage_name(position.stage)} finished below its success threshold: "
                        f"{tally.succeeded} of {tally.members} succeeded "
                        f"({_percent(tally.share(tally.succeeded))}), success threshold "
                        f"{_percent(thresholds.success)}"
                    ),
                )
            return position
        if position.stage + 1 < len(tallies):
            position = replace(position, stage=position.stage + 1, override=False)
            continue
        if all(t.finished for t in tallies):
            return replace(position, state=RolloutState.DONE, reason="", override=False)
        return position


def transition(
    position: RolloutPosition,
    event: RolloutEvent,
    tallies: Sequence[StageTally],
    thresholds: Thresholds,
) -> RolloutPosition:
    """The position after `event`, given each stage's tally (stages not started yet have
    tallies with nothing succeeded or failed). RolloutRefused when the event does not apply."""
    state = position.state
    if event is RolloutEvent.PROGRESS:
        return (
            _progress(position, tallies, thresholds)
            if state is RolloutState.RUNNING
            else (position)
        )
    if state.finished:
        raise RolloutRefused(f"the rollout is already {state.value}")
    if event is RolloutEvent.CANCEL:
        return replace(position, state=RolloutState.CANCELLED, reason="cancelled by the operator")
    if event is RolloutEvent.PAUSE:
        if state is RolloutState.PAUSED:
            raise RolloutRefused("the rollout is already paused")
        return replace(position, state=RolloutState.PAUSED, reason="paused by the operator")
    if state is RolloutState.RUNNING:
        raise RolloutRefused("the rollout is running, not paused")
    resumed = replace(
        position,
        state=RolloutState.RUNNING,
        reason="",
        acknowledged=tuple(t.failed for t in tallies),
        override=tallies[position.stage].finished,
    )
    return _progress(resumed, tallies, thresholds)
