"""Property test: any sequence of Next / Back / Quit / choices keeps the installer's promises.

A hypothesis `RuleBasedStateMachine` drives the Python API over every kind of target (blank,
4.0.0, 4.5.0, 5.0.0) with valid and invalid answers. The engine is injected through the API's
seam and counts its calls, which is how "nothing is written" is observed.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from disk_images.layout import Slot
from disk_images.state import Registration, RegistrationMode, UpgradeStatus
from enginekit.versions import DiskLayout
from installer import steps
from installer.frontends.api import Installer
from installer.model import InstalledEngine, MediumInfo, Screen, TargetInfo, VmSummary
from installer.plan import InstallPlan, InstallReport, ProgressCallback

DISK_ID = "11111111-2222-3333-4444-555555555555"
MEDIUM = MediumInfo(
    Path("/m/engine-5.0.0.iso"),
    "5.0.0",
    ("4.5.0",),
    "5.0.0",
    DiskLayout.GPT_AB,
    ("us", "uk", "de"),
    eula_text="licence",
)


def make_target(version: str | None) -> TargetInfo:
    if version is None:
        return TargetInfo(Path("/d/blank.img"), 4 << 30, None, None, "blank")
    return TargetInfo(
        Path("/d/engine.img"),
        4 << 30,
        DISK_ID,
        InstalledEngine(
            version,
            DiskLayout.MBR if version == "4.0.0" else DiskLayout.GPT_AB,
            Slot.A,
            UpgradeStatus.BLANK,
            Registration(RegistrationMode.STANDALONE),
            "us",
            (VmSummary("v", "custom", version, version),),
        ),
    )


class NavigationMachine(RuleBasedStateMachine):
    installer: Installer

    def __init__(self) -> None:
        super().__init__()
        self.engine_calls: list[InstallPlan] = []

    def engine(self, plan: InstallPlan, progress: ProgressCallback) -> InstallReport:
        model = self.installer.model
        # Checked at the moment of writing, not afterwards.
        assert model.screen is Screen.PROGRESS
        assert model.eula_accepted
        assert model.confirmed
        assert plan.eula_accepted
        self.engine_calls.append(plan)
        progress("write", 1.0)
        return InstallReport(
            plan, plan.target_version, "B", UpgradeStatus.INSTALLED_REBOOT_REQUIRED
        )

    @initialize(version=st.sampled_from([None, "4.0.0", "4.5.0", "5.0.0"]))
    def start(self, version: str | None) -> None:
        self.installer = Installer(MEDIUM, make_target(version), self.engine)

    def running(self) -> bool:
        return not self.installer.screen.terminal

    @precondition(
        lambda self: (
            self.running()
            and (
                self.installer.view.default is not None or self.installer.screen is Screen.PROGRESS
            )
        )
    )
    @rule()
    def next(self) -> None:
        self.installer.next()

    @precondition(lambda self: self.running())
    @rule()
    def back(self) -> None:
        before = self.installer.screen
        self.installer.back()
        after = self.installer.screen
        if before is Screen.EXISTING:
            assert after is Screen.KEYBOARD
        if before is Screen.REGISTRATION and self.installer.model.target.installation is None:
            assert after is Screen.KEYBOARD  # the skipped screen 5 keeps the direction
        if before in (Screen.PROGRESS, Screen.FINISH, Screen.BOOT_MENU, Screen.WELCOME):
            assert after is before

    @precondition(lambda self: self.running())
    @rule(data=st.data())
    def choose_offered(self, data: st.DataObject) -> None:
        view = self.installer.view
        if not view.choices:
            return
        values = [c.value for c in view.choices]
        # Lean towards the first (recommended) choice so runs often get to the end.
        value = data.draw(st.sampled_from(values + [values[0]] * 3))
        fields: dict[str, str] = {}
        for field in view.fields.get(value, ()):
            fields[field.name] = data.draw(
                st.sampled_from([DISK_ID, "wrong", "sync.example.com", "tok3n", ""])
            )
        self.installer.choose(value, **fields)

    @precondition(lambda self: self.running() and self.installer.screen is not Screen.PROGRESS)
    @rule(value=st.text(max_size=12))
    def choose_anything(self, value: str) -> None:
        before = self.installer.screen
        offered = [c.value for c in self.installer.view.choices]
        self.installer.choose(value)
        if value not in offered:
            assert self.installer.screen is before  # a value not offered never moves on

    @precondition(lambda self: self.running())
    @rule(dice=st.integers(0, 15))
    def quit(self, dice: int) -> None:
        if dice:  # quitting ends a run; keep it rare so runs get far
            return
        before = self.installer.screen
        self.installer.quit()
        if before in (Screen.PROGRESS, Screen.FINISH):
            assert self.installer.screen is before
        else:
            assert self.installer.screen is Screen.ABORTED

    @rule()
    def look(self) -> None:
        """Always possible, even after the run ended: reading the model changes nothing."""
        screen = self.installer.screen
        assert self.installer.view.screen is screen
        assert self.installer.screen is screen

    def teardown(self) -> None:
        event(f"ended on {self.installer.screen.value}")

    @invariant()
    def nothing_written_before_confirmation(self) -> None:
        model = self.installer.model
        history = model.history
        if Screen.PROGRESS not in history or model.screen is Screen.PROGRESS:
            assert self.engine_calls == []
        assert len(self.engine_calls) <= 1
        if model.screen is Screen.ABORTED:
            assert self.engine_calls == []

    @invariant()
    def eula_accepted_before_anything_is_written(self) -> None:
        if self.engine_calls:
            assert self.installer.model.eula_accepted
            history = self.installer.model.history
            first_progress = history.index(Screen.PROGRESS)
            assert history[first_progress - 1] is Screen.SUMMARY
            assert Screen.EULA in history[:first_progress]

    @invariant()
    def screen_is_one_that_applies(self) -> None:
        screen = self.installer.screen
        assert screen.terminal or screen in steps.applicable(self.installer.model)

    @invariant()
    def views_render(self) -> None:
        view = self.installer.view
        assert view.screen is self.installer.screen


NavigationMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_navigation = NavigationMachine.TestCase
