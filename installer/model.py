"""The installer's model: what the medium and the target are, which screen we are on, and the
answers given so far.

There is one state enum (`Screen`) and one method that changes state (`InstallerModel.move`);
the declarative step list in `installer.steps` decides where a move lands. The model never
does I/O: the medium and target arrive as plain data (`MediumInfo`, `TargetInfo`, filled in
by `installer.frontends.api.load_medium/load_target`), and `to_plan()` turns the answers into
the `InstallPlan` the engine carries out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from disk_images.layout import Slot
from disk_images.state import Registration, RegistrationMode, UpgradeStatus
from enginekit.errors import InternalError
from enginekit.secret import Secret
from enginekit.versions import DiskLayout
from installer import rules
from installer.plan import InstallMode, InstallPlan, InstallReport


class Screen(enum.StrEnum):
    """Every state of the installer; the values double as answer-file section names."""

    BOOT_MENU = "boot"
    WELCOME = "welcome"
    EULA = "eula"
    KEYBOARD = "keyboard"
    EXISTING = "existing"
    REGISTRATION = "registration"
    SUMMARY = "summary"
    PROGRESS = "progress"
    FINISH = "finish"
    DONE = "done"  # terminal: the run finished
    ABORTED = "aborted"  # terminal: the user quit or declined; nothing was written

    @property
    def terminal(self) -> bool:
        return self in (Screen.DONE, Screen.ABORTED)


class Direction(enum.StrEnum):
    """What a screen decided (xenserver/host-installer's forward/back/repeat/exit)."""

    FORWARD = "forward"
    BACK = "back"
    REPEAT = "repeat"
    EXIT = "exit"


# ---- what the front ends know about the medium and the target, as plain data ----------------


@dataclass(frozen=True)
class VmSummary:
    name: str
    kind: str  # shared | custom | local
    pv_drivers: str
    published_for: str
    size_bytes: int = 0


@dataclass(frozen=True)
class MediumInfo:
    path: Path
    version: str
    upgrade_from: tuple[str, ...]
    pv_drivers: str
    layout: DiskLayout
    keyboards: tuple[str, ...]
    keyboard_names: dict[str, str] = field(default_factory=dict)
    eula_text: str = ""


@dataclass(frozen=True)
class InstalledEngine:
    """What the probe found on the target."""

    version: str
    layout: DiskLayout
    active_slot: Slot | None
    upgrade_status: UpgradeStatus
    registration: Registration | None  # None: the disk has no config.json
    keyboard: str | None
    vms: tuple[VmSummary, ...] = ()
    install_complete: bool = True
    # What the probe found damaged and will be repaired first (empty on a sound disk), and
    # the VM directories it could not read ("name: reason"): an erase destroys them too.
    damage: tuple[str, ...] = ()
    repairs: tuple[str, ...] = ()
    unreadable_vms: tuple[str, ...] = ()

    @property
    def registered(self) -> bool:
        return self.registration is not None and self.registration.registered


@dataclass(frozen=True)
class TargetInfo:
    path: Path
    size_bytes: int
    # GPT disk GUID or mbr-xxxxxxxx; on a non-blank disk whose table the probe cannot read
    # (no table, both GPTs damaged) `data-<12 hex>` from its size and first MiB (the backup
    # GPT's GUID when only the primary is damaged); None on a blank disk.
    disk_id: str | None
    installation: InstalledEngine | None
    not_found_reason: str = ""  # what the probe said when it found no Engine
    # No Engine, but not blank either (foreign table, damaged GPT, a filesystem, an incomplete
    # install): such a disk is only ever erased after its disk id is typed, never overwritten.
    holds_data: bool = False
    # One of the computer's disks (a block device) rather than an image file: only the live
    # installer offers these.
    block_device: bool = False

    @property
    def other_data(self) -> str | None:
        """The probe's reason when the disk holds data that is not an Engine installation."""
        if self.installation is not None or not self.holds_data:
            return None
        return self.not_found_reason or "unrecognised content"


# ---- the answers, one type per screen -------------------------------------------------------


@dataclass(frozen=True)
class BootAnswer:
    entry: str = "install"


@dataclass(frozen=True)
class WelcomeAnswer:
    pass


@dataclass(frozen=True)
class EulaAnswer:
    accept: bool


@dataclass(frozen=True)
class KeyboardAnswer:
    layout: str


@dataclass(frozen=True)
class ExistingAnswer:
    action: InstallMode
    confirm_erase: str | None = None


@dataclass(frozen=True)
class RegistrationAnswer:
    """keep=True (upgrade/repair only): leave the disk's registration as it is."""

    mode: str | None = None  # a RegistrationMode value (the screen refuses anything else)
    server: str | None = None
    token: Secret | None = None
    keep: bool = False


@dataclass(frozen=True)
class SummaryAnswer:
    confirm: bool


@dataclass(frozen=True)
class ProgressAnswer:
    report: InstallReport


@dataclass(frozen=True)
class FinishAnswer:
    reboot: bool


Answer = (
    BootAnswer
    | WelcomeAnswer
    | EulaAnswer
    | KeyboardAnswer
    | ExistingAnswer
    | RegistrationAnswer
    | SummaryAnswer
    | ProgressAnswer
    | FinishAnswer
)

ANSWER_TYPES: dict[Screen, type] = {
    Screen.BOOT_MENU: BootAnswer,
    Screen.WELCOME: WelcomeAnswer,
    Screen.EULA: EulaAnswer,
    Screen.KEYBOARD: KeyboardAnswer,
    Screen.EXISTING: ExistingAnswer,
    Screen.REGISTRATION: RegistrationAnswer,
    Screen.SUMMARY: SummaryAnswer,
    Screen.PROGRESS: ProgressAnswer,
    Screen.FINISH: FinishAnswer,
}


@dataclass(frozen=True)
class Outcome:
    """What a screen returns: where to go, the answer to keep, and a line to show the user."""

    direction: Direction
    answer: Answer | None = None
    message: str = ""


def _action(answer: Answer) -> InstallMode | None:
    return answer.action if isinstance(answer, ExistingAnswer) else None


class InstallerModel:
    """The installer's whole state. `move()` is the only method that changes it."""

    def __init__(self, medium: MediumInfo, target: TargetInfo) -> None:
        self.medium = medium
        self.target = target
        self.decision = rules.decide(
            medium.version,
            medium.upgrade_from,
            target.installation.version if target.installation else None,
            target.installation.layout if target.installation else None,
            medium_layout=medium.layout,
            other_data=target.other_data,
        )
        self._screen = Screen.BOOT_MENU
        self._answers: dict[Screen, Answer] = {}
        self._message = ""
        self._history: list[Screen] = [Screen.BOOT_MENU]

    def __repr__(self) -> str:
        return f"InstallerModel(screen={self._screen}, answered={sorted(self._answers)})"

    # ---- reading ----

    @property
    def screen(self) -> Screen:
        return self._screen

    @property
    def message(self) -> str:
        """The line the last move left for the user (why a screen repeats, why we stopped)."""
        return self._message

    @property
    def history(self) -> tuple[Screen, ...]:
        """Every screen shown, in order (repeats included); for tests and debugging."""
        return tuple(self._history)

    def answer(self, screen: Screen) -> Answer | None:
        return self._answers.get(screen)

    @property
    def asks_existing(self) -> bool:
        """Screen 5 applies: the disk holds an Engine, or anything else that is not blank."""
        return self.target.installation is not None or self.target.holds_data

    @property
    def eula_accepted(self) -> bool:
        answer = self._answers.get(Screen.EULA)
        return isinstance(answer, EulaAnswer) and answer.accept

    @property
    def confirmed(self) -> bool:
        answer = self._answers.get(Screen.SUMMARY)
        return isinstance(answer, SummaryAnswer) and answer.confirm

    @property
    def report(self) -> InstallReport | None:
        answer = self._answers.get(Screen.PROGRESS)
        return answer.report if isinstance(answer, ProgressAnswer) else None

    @property
    def mode(self) -> InstallMode:
        """The install mode the answers so far lead to."""
        if not self.asks_existing:
            return InstallMode.FRESH
        answer = self._answers.get(Screen.EXISTING)
        if isinstance(answer, ExistingAnswer):
            return answer.action
        return self.decision.allowed[0]

    @property
    def keyboard(self) -> str:
        """The layout chosen, else the installed one, else the medium's first."""
        answer = self._answers.get(Screen.KEYBOARD)
        if isinstance(answer, KeyboardAnswer):
            return answer.layout
        installed = self.target.installation
        if installed and installed.keyboard in self.medium.keyboards:
            return installed.keyboard
        return self.medium.keyboards[0] if self.medium.keyboards else "us"

    # ---- the one place state changes ----

    def move(self, outcome: Outcome) -> Screen:
        """Record the outcome of the current screen and go where the step list says."""
        from installer import steps

        if self._screen.terminal:
            raise InternalError(f"the installer already ended ({self._screen})")
        if outcome.answer is not None:
            expected = ANSWER_TYPES[self._screen]
            if not isinstance(outcome.answer, expected):
                raise InternalError(
                    f"screen {self._screen} got a {type(outcome.answer).__name__} answer"
                )
            if self._screen is Screen.EXISTING and self.mode != _action(outcome.answer):
                # Another kind of run: the registration given for the old one (say standalone
                # for an erase) is not carried over (an upgrade offers "keep" first).
                self._answers.pop(Screen.REGISTRATION, None)
            self._answers[self._screen] = outcome.answer
        self._message = outcome.message
        if outcome.direction is Direction.EXIT:
            if self._screen is Screen.PROGRESS and self.report is not None:
                raise InternalError("cannot abort after the engine ran")
            new = Screen.ABORTED
        elif outcome.direction is Direction.REPEAT:
            new = self._screen
        else:
            new = steps.neighbour(self, self._screen, outcome.direction)
        if new is Screen.PROGRESS and not (self.eula_accepted and self.confirmed):
            raise InternalError("the progress screen needs an accepted EULA and a confirmation")
        self._screen = new
        self._history.append(new)
        return new

    # ---- the result ----

    def to_plan(self, *, reboot: bool | None = None) -> InstallPlan:
        """The plan the answers describe. Needs an accepted EULA."""
        if not self.eula_accepted:
            raise InternalError("a plan needs the EULA accepted first")
        mode = self.mode
        rules.require_allowed(self.decision, mode)
        installed = self.target.installation
        keyboard: str | None = self.keyboard
        registration: Registration | None = None
        reg_answer = self._answers.get(Screen.REGISTRATION)
        if isinstance(reg_answer, RegistrationAnswer) and not reg_answer.keep:
            registration = Registration(
                RegistrationMode(reg_answer.mode or "standalone"),
                server=reg_answer.server,
                token=reg_answer.token,
            )
        if mode in (InstallMode.UPGRADE, InstallMode.REPAIR):
            # None means "keep what the disk has" to the engine.
            if installed is not None and keyboard == installed.keyboard:
                keyboard = None
        elif registration is None:
            registration = Registration(RegistrationMode.STANDALONE)
        if reboot is None:
            finish = self._answers.get(Screen.FINISH)
            reboot = isinstance(finish, FinishAnswer) and finish.reboot
        return InstallPlan(
            medium=self.medium.path,
            target=self.target.path,
            mode=mode,
            target_version=self.medium.version,
            source_version=installed.version if installed else None,
            keyboard=keyboard,
            registration=registration,
            reboot=reboot,
            eula_accepted=True,
            expected_disk_id=self._expected_disk_id(mode),
            target_is_device=self.target.block_device,
        )

    def _expected_disk_id(self, mode: InstallMode) -> str | None:
        """The id the engine must find on the disk: the one typed to confirm an erase (the
        screens accept only the probe's id), else the one the probe showed."""
        answer = self._answers.get(Screen.EXISTING)
        if mode is InstallMode.ERASE and isinstance(answer, ExistingAnswer):
            return answer.confirm_erase
        return self.target.disk_id
