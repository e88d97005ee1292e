"""The installer as a Python API, and the controller the other two front ends drive.

`Installer` wraps one `InstallerModel`: `choose()` answers the current screen, `next()` takes
its default, `back()` and `quit()` navigate, `install()` runs the engine on the progress
screen. The engine is injected: `select_engine(dry_run)` is the one factory that chooses the
real `installer.engine.run_plan` or the dry run that writes nothing (subiquity's dry-run
seam), and tests may pass their own function to count calls. `load_medium()`/`load_target()`
are the one adapter from the medium reader and the disk probe to the model's plain data.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from disk_images.probe import NoInstallation, NoInstallationKind, ProbeResult, VmInfo
from disk_images.state import Registration, UpgradeStatus
from enginekit.errors import InternalError, UserInputError
from enginekit.text import display_text, one_line
from installer import rules, screens
from installer.model import (
    Answer,
    InstalledEngine,
    InstallerModel,
    MediumInfo,
    Outcome,
    ProgressAnswer,
    Screen,
    TargetInfo,
    VmSummary,
)
from installer.plan import InstallMode, InstallPlan, InstallReport, ProgressCallback, VmNote

if TYPE_CHECKING:
    from media.reader import MediumReader

log = logging.getLogger(__name__)

EngineFunction = Callable[[InstallPlan, ProgressCallback], InstallReport]


def _no_progress(step: str, fraction: float) -> None:
    pass


class DryRunEngine:
    """Stands in for the engine: records the plan, writes nothing, reports what would happen."""

    def __init__(self, model_vms: tuple[VmSummary, ...] = (), pv_drivers: str = "") -> None:
        self.plans: list[InstallPlan] = []
        self._vms = model_vms
        self._pv_drivers = pv_drivers

    def __call__(self, plan: InstallPlan, progress: ProgressCallback) -> InstallReport:
        # The engine's own read-only checks (target, medium verification, probe, guard), so
        # a dry run refuses exactly what the real run would (under a shared lock, held only while
        # it checks).
        from installer.engine.run import dry_run_check

        dry_run_check(plan)
        self.plans.append(plan)
        progress("dry run: checks passed", 1.0)
        notes: tuple[VmNote, ...] = ()
        if plan.mode in (InstallMode.UPGRADE, InstallMode.REPAIR):
            notes = rules.vm_notes(self._vms, plan.target_version, self._pv_drivers)
        return InstallReport(
            plan=plan,
            installed_version=plan.target_version,
            slot=None,
            upgrade_status=UpgradeStatus.BLANK,
            vm_notes=notes,
            steps_done=("dry run: checks passed",),
        )


def select_engine(dry_run: bool, model: InstallerModel | None = None) -> EngineFunction:
    """The one place that decides whether this run writes: the real engine or the dry run."""
    if dry_run:
        if model is not None and model.target.installation is not None:
            return DryRunEngine(model.target.installation.vms, model.medium.pv_drivers)
        return DryRunEngine()
    return _real_engine


def _real_engine(plan: InstallPlan, progress: ProgressCallback) -> InstallReport:
    # Imported on first use: screens and dry runs never load the code that writes disks.
    from installer.engine import run_plan

    report: InstallReport = run_plan(plan, progress)
    return report


class Installer:
    """One installer run. The model moves only through `InstallerModel.move`."""

    def __init__(
        self,
        medium: MediumInfo,
        target: TargetInfo,
        engine: EngineFunction | None = None,
        *,
        dry_run: bool = False,
    ) -> None:
        self.model = InstallerModel(medium, target)
        self._engine = engine if engine is not None else select_engine(dry_run, self.model)
        self.reboot_hint: bool | None = None  # known up front in unattended runs
        # Called once the engine has run and the model is on the finish screen (the CLI
        # records the answers there, so a Ctrl-C at the finish prompt still keeps them).
        self.on_installed: Callable[[InstallerModel], None] | None = None
        # Called with each screen the run moves to (the live installer's event port).
        self.on_screen: Callable[[Screen], None] | None = None

    def _move(self, outcome: Outcome) -> Screen:
        """The one way the controller moves the model: then the observer hears of it."""
        screen = self.model.move(outcome)
        if self.on_screen is not None:
            self.on_screen(screen)
        return screen

    @property
    def screen(self) -> Screen:
        return self.model.screen

    @property
    def view(self) -> screens.View:
        return screens.view(self.model)

    @property
    def message(self) -> str:
        return self.model.message

    @property
    def report(self) -> InstallReport | None:
        return self.model.report

    def plan(self) -> InstallPlan:
        """The plan the answers so far describe (the summary screen shows it)."""
        return self.model.to_plan(reboot=self.reboot_hint)

    def answer(self, answer: Answer) -> Screen:
        """Give the current screen a typed answer and move where it decides."""
        if self.screen is Screen.PROGRESS:
            raise InternalError("the progress screen is left through install()")
        return self._move(screens.handle(self.model, answer))

    def choose(self, value: str, **fields: str) -> Screen:
        """Pick choice `value` on the current screen (with the text fields it needs)."""
        if self.screen.terminal:
            raise InternalError(f"the installer already ended ({self.screen})")
        if self.screen is Screen.PROGRESS:
            raise InternalError("the progress screen is left through install()")
        return self._move(screens.choose(self.model, value, fields))

    def next(self) -> Screen:
        """Take the current screen's default choice (and the text its fields show, as Enter
        would); on the progress screen, install."""
        if self.screen is Screen.PROGRESS:
            self.install()
            return self.screen
        if self.screen.terminal:
            raise InternalError(f"the installer already ended ({self.screen})")
        current = self.view
        if current.default is None:
            options = ", ".join(c.value for c in current.choices)
            raise UserInputError(
                f"the {self.screen.value} screen needs a choice: {options}",
                hint="choose one of the options listed",
            )
        # The default's fields as shown (what was typed before Back); empty otherwise.
        fields = {f.name: f.default for f in current.fields.get(current.default, ())}
        return self.choose(current.default, **fields)

    def back(self) -> Screen:
        return self._move(screens.back(self.model))

    def quit(self) -> Screen:
        return self._move(screens.quit_run(self.model))

    def install(self, progress: ProgressCallback | None = None) -> InstallReport:
        """Run the engine with the confirmed plan, then move on to the finish screen."""
        if self.screen is not Screen.PROGRESS:
            raise InternalError(f"install() on the {self.screen.value} screen")
        plan = self.plan()
        log.debug("running the engine: mode=%s target=%s", plan.mode, plan.target)
        report = self._engine(plan, progress or _no_progress)
        self._move(screens.handle(self.model, ProgressAnswer(report)))
        if self.on_installed is not None:
            self.on_installed(self.model)
        return report


# ---- the adapter from the medium reader and the disk probe -----------------------------------


def medium_info_from(reader: MediumReader, path: Path) -> MediumInfo:
    """MediumInfo from an open medium. Text the medium supplies (the licence, keyboard names
    and codes) is made safe to show (`enginekit.text.display_text`): a medium may carry
    escape sequences that would repaint or retitle the terminal."""
    manifest = reader.manifest
    try:
        eula_text = reader.read_bytes(manifest.eula).decode("utf-8", errors="replace")
    except Exception as exc:  # noqa: BLE001 - the medium is at fault; say so on screen 3
        log.debug("cannot read the EULA from %s: %s", path, exc)
        eula_text = "(the licence text could not be read from the medium)"
    names: dict[str, str] = {}
    try:
        loaded = json.loads(reader.read_bytes("engine/keyboards.json"))
        if isinstance(loaded, dict):
            names = {one_line(str(k)): one_line(str(v)) for k, v in loaded.items()}
    except Exception as exc:  # noqa: BLE001 - names are a nicety; codes are enough
        log.debug("no keyboard names on %s: %s", path, exc)
    return MediumInfo(
        path=path,
        version=str(manifest.version),
        upgrade_from=tuple(str(v) for v in manifest.upgrade_from),
        pv_drivers=str(manifest.pv_drivers),
        layout=manifest.layout,
        keyboards=tuple(one_line(k) for k in manifest.keyboards),
        keyboard_names=names,
        eula_text=display_text(eula_text),
    )


def load_medium(path: Path) -> MediumInfo:
    from media.reader import MediumReader

    with MediumReader.open(path) as reader:
        return medium_info_from(reader, path)


def _size_of(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def _vm_summary(vm: VmInfo) -> VmSummary:
    return VmSummary(
        name=one_line(vm.name),
        kind=vm.kind,
        pv_drivers=vm.pv_drivers,
        published_for=vm.published_for,
        size_bytes=vm.size_bytes,
    )


def _shown_registration(registration: Registration | None) -> Registration | None:
    """The disk's registration with its server made safe to show (it comes from the disk)."""
    if registration is None or registration.server is None:
        return registration
    return replace(registration, server=one_line(registration.server))


def target_info_from(found: ProbeResult, path: Path, size_bytes: int) -> TargetInfo:
    """TargetInfo from what `disk_images.probe.probe` returned, field by typed field."""
    if isinstance(found, NoInstallation):
        return TargetInfo(
            path=path,
            size_bytes=size_bytes,
            # The probe names every disk that holds data (`data-<12 hex>` from its content
            # when no table is readable); a blank disk has no id and needs no confirmation.
            disk_id=found.disk_id,
            installation=None,
            not_found_reason=found.reason,
            # Anything but a blank disk holds data: the screens offer only a confirmed erase.
            holds_data=found.kind is not NoInstallationKind.BLANK,
        )
    return TargetInfo(
        path=path,
        size_bytes=size_bytes,
        disk_id=found.disk_id,
        installation=InstalledEngine(
            version=found.version,
            layout=found.layout,
            active_slot=found.active_slot,
            upgrade_status=found.upgrade_status,
            registration=_shown_registration(found.registration),
            keyboard=one_line(found.keyboard) if found.keyboard is not None else None,
            vms=tuple(_vm_summary(vm) for vm in found.vms),
            install_complete=found.install_complete,
            damage=tuple(display_text(d) for d in found.damage),
            repairs=tuple(r.description for r in found.repairs),
            unreadable_vms=tuple(
                f"{one_line(bad.name)}: {bad.reason}" for bad in found.unreadable_vms
            ),
        ),
    )


def load_target(path: Path, *, block_device: bool = False) -> TargetInfo:
    """What the probe finds on `path`. A block device is refused unless `block_device` (the
    live installer, which installs onto the computer's own disks)."""
    if not path.exists():
        raise UserInputError(
            f"{path}: no such target disk", hint="create one, e.g. engine-disk create DISK.img"
        )
    from disk_images.probe import probe

    if path.is_block_device():
        if not block_device:
            from installer.engine.refusals import refuse_block_device

            raise refuse_block_device(path)
        from installer.engine.run import hold_disk

        with hold_disk(path, exclusive=False):
            found = target_info_from(probe(path), path, _size_of(path))
        return replace(found, block_device=True)
    if not path.is_file():
        return target_info_from(probe(path), path, _size_of(path))  # probe's own one line
    from installer.engine.run import hold_disk

    # A shared lock while probing: a disk another engine-install or engine-disk boot is
    # writing right now is refused here in one line naming the holder, not misread as a
    # half-written disk (the engine checks again under its exclusive lock).
    with hold_disk(path, exclusive=False):
        return target_info_from(probe(path), path, _size_of(path))
