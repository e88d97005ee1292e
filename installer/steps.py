"""The installer's screens as a declarative list of steps, each with the predicate that says
whether it applies to this run (after xenserver/host-installer's `Step(screen, predicates)`).

`neighbour()` walks the list forward or back from the current screen, skipping steps whose
predicate is false; a skipped screen keeps the direction of travel, so Back skips it too.
Steps that may not be left backwards (the progress screen, the finish screen) say so here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from enginekit.errors import InternalError
from installer.model import Direction, InstallerModel, Screen


def always(_model: InstallerModel) -> bool:
    return True


def disk_not_blank(model: InstallerModel) -> bool:
    """Screen 5 when the probe found an Engine or any other data; only a blank disk goes
    straight on to a fresh install."""
    return model.asks_existing


def asks_registration(_model: InstallerModel) -> bool:
    """Every mode: mandatory for fresh/erase, and offered with "keep" on upgrade/repair."""
    return True


@dataclass(frozen=True)
class Step:
    screen: Screen
    applies: Callable[[InstallerModel], bool] = always
    back_allowed: bool = True  # may the user leave this screen backwards?


STEPS: tuple[Step, ...] = (
    Step(Screen.BOOT_MENU, back_allowed=False),
    Step(Screen.WELCOME, back_allowed=False),
    Step(Screen.EULA),
    Step(Screen.KEYBOARD),
    Step(Screen.EXISTING, applies=disk_not_blank),
    Step(Screen.REGISTRATION, applies=asks_registration),
    Step(Screen.SUMMARY),
    # Once the engine has run there is no way back: the disk has changed.
    Step(Screen.PROGRESS, back_allowed=False),
    Step(Screen.FINISH, back_allowed=False),
)

_INDEX = {step.screen: i for i, step in enumerate(STEPS)}


def step_for(screen: Screen) -> Step:
    try:
        return STEPS[_INDEX[screen]]
    except KeyError:
        raise InternalError(f"{screen} is not a step") from None


def number(screen: Screen) -> int:
    """The screen's place in the step list, counted from 1 as the vendor's guide counts
    ("screen 5" is the existing installation, whether or not this run shows it)."""
    return _INDEX[step_for(screen).screen] + 1


def can_go_back(model: InstallerModel, screen: Screen) -> bool:
    """Whether Back makes sense on `screen`: allowed there, and some earlier step applies."""
    if screen.terminal or not step_for(screen).back_allowed:
        return False
    return any(step.applies(model) for step in STEPS[: _INDEX[screen]])


def applicable(model: InstallerModel) -> tuple[Screen, ...]:
    """The screens this run would show, in order, given the answers so far."""
    return tuple(step.screen for step in STEPS if step.applies(model))


def neighbour(model: InstallerModel, screen: Screen, direction: Direction) -> Screen:
    """The next applicable screen from `screen` in `direction` (FORWARD or BACK).

    Forward past the last step is DONE. Back where it is not allowed stays put.
    """
    if direction is Direction.FORWARD:
        for step in STEPS[_INDEX[screen] + 1 :]:
            if step.applies(model):
                return step.screen
        return Screen.DONE
    if direction is Direction.BACK:
        if not can_go_back(model, screen):
            return screen
        for step in reversed(STEPS[: _INDEX[screen]]):
            if step.applies(model):
                return step.screen
        return screen  # pragma: no cover - can_go_back checked an earlier step applies
    raise InternalError(f"neighbour() takes forward or back, not {direction}")
