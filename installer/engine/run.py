"""`run_plan`: check a plan once more, then dispatch it to fresh install, upgrade or repair.

Everything that can refuse a plan runs before the first byte is written, in this order: the
EULA, the target (writable, large enough, not in use), the medium (opens, matches the plan's
version, every manifest file passes its size and SHA-256, no payload path escapes its
partition), the disk (the probe agrees with the plan), the rules, the fit (the payload fits
the slots and the ESP) and readability (every partition the run touches can be read). From
before the probe to the last write the run holds the target's disk lock exclusively
(`hold_target`), so what the guard saw is what the engine writes to: no second install or
boot can slip in between.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from disk_images.lock import DiskInUse, disk_lock
from disk_images.probe import Installation, NoInstallation, NoInstallationKind, probe
from disk_images.state import UpgradeStatus
from enginekit.errors import UserInputError
from enginekit.versions import DiskLayout, EngineVersion
from installer import rules
from installer.engine.checkpoints import (
    FRESH_STEPS,
    MIGRATE_STEPS,
    UPGRADE_STEPS,
    Checkpoint,
    StepTracker,
)
from installer.engine.common import SystemImage
from installer.engine.fresh import fresh_install
from installer.engine.migrate import migrate_mbr_to_gpt
from installer.engine.payload import MediumRejected
from installer.engine.preflight import check_fit, check_readable
from installer.engine.refusals import (
    Refused,
    check_target,
    check_upgrade,
    refuse_medium_as_target,
    target_size,
)
from installer.engine.repair import repair_damage, repair_mbr
from installer.engine.upgrade import refuse_mbr_upgrade, upgrade_in_place
from installer.plan import InstallMode, InstallPlan, InstallReport, ProgressCallback, VmNote
from media.isomd5 import Md5Status, describe, read_embedded
from media.isomd5 import ProgressCallback as Md5Progress
from media.isomd5 import check as md5_check
from media.reader import IsoMedium, MediumReader

log = logging.getLogger(__name__)


def _open_medium(path: Path) -> MediumReader:
    try:
        return MediumReader.open(path)
    except UserInputError as exc:
        raise MediumRejected(
            f"the medium fails verification: {exc.message}",
            hint=exc.hint or "rebuild or re-download the medium",
        ) from None


def _verify_medium(medium: MediumReader, plan: InstallPlan, tracker: StepTracker) -> SystemImage:
    manifest = medium.manifest
    if str(manifest.version) != plan.target_version:
        raise Refused(
            f"{plan.medium}: the medium holds Engine {manifest.version}, "
            f"the plan was made for {plan.target_version}",
            hint="run the installer again with this medium",
        )
    md5_length = _embedded_md5_length(medium)
    total = sum(f.size for f in manifest.files) + md5_length or 1
    hashed = 0

    def on_bytes(count: int) -> None:
        nonlocal hashed
        hashed += count
        tracker.advance(hashed / total)

    if md5_length:
        _check_embedded_md5(plan, lambda done, _length: tracker.advance(done / total))
        hashed = md5_length
    problems = medium.verify_files(on_bytes)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise MediumRejected(
            f"{plan.medium}: the medium fails verification: {problems[0].describe()}{more}",
            hint="the medium is damaged; rebuild or re-download it (engine-media verify)",
        )
    return SystemImage.read(medium)


def _embedded_md5_length(medium: MediumReader) -> int:
    """How many bytes the ISO's embedded isomd5sum MD5 covers; 0 for a medium directory (a
    payload tree has none) or an ISO without one."""
    if not isinstance(medium, IsoMedium):
        return 0
    try:
        embedded = read_embedded(medium.path)
    except UserInputError as exc:
        raise _md5_unreadable(exc) from None
    return embedded.hashed_length if embedded is not None else 0


def _md5_unreadable(exc: UserInputError) -> MediumRejected:
    return MediumRejected(
        f"the medium fails verification: {exc.message}",
        hint=exc.hint or "rebuild or re-download the medium",
    )


def _check_embedded_md5(plan: InstallPlan, progress: Md5Progress) -> None:
    """The whole image against its embedded MD5, the check `engine-media verify` and
    `engine-media md5 check` make: a changed byte outside every payload file (the volume
    id, the boot catalogue) is caught too. About 1.5 s per GiB read."""
    try:
        result = md5_check(plan.medium, progress=progress)
    except UserInputError as exc:
        raise _md5_unreadable(exc) from None
    if result.status is Md5Status.FAIL:
        raise MediumRejected(
            f"{plan.medium}: the medium fails verification: {describe(result)}",
            hint="the medium is damaged; rebuild or re-download it (engine-media verify)",
        )


def _installed(found: Installation | NoInstallation) -> Installation | None:
    return found if isinstance(found, Installation) else None


def _guard(plan: InstallPlan, found: Installation | NoInstallation, medium: MediumReader) -> None:
    """The rules once more, plus what only the engine knows (the disk as it is right now)."""
    manifest = medium.manifest
    if found.in_use_by:
        raise Refused(
            f"{plan.target}: the disk is in use ({', '.join(found.in_use_by)})",
            hint=_in_use_hint(found.in_use_by),
        )
    mode = plan.mode
    _check_disk_id(plan, found)
    if isinstance(found, NoInstallation):
        blank = found.kind is NoInstallationKind.BLANK
        if mode is InstallMode.FRESH and blank:
            return
        if mode is InstallMode.FRESH:
            # The last guard against a silent wipe: the screens ask for a confirmed erase.
            raise Refused(
                f"{plan.target}: holds data: {found.reason}; choose erase and confirm the disk id",
                hint='answer file: [existing] action = "erase" and confirm_erase = "<disk id>"',
            )
        if mode is InstallMode.ERASE and not blank:
            return  # not an Engine, but the user confirmed erasing it
    installed = _installed(found)
    if plan.source_version is not None and (
        installed is None or installed.version != plan.source_version
    ):
        now = installed.version if installed else "no Engine installation"
        raise Refused(
            f"{plan.target}: the plan expects Engine {plan.source_version} on the disk, "
            f"but it holds {now}",
            hint="the disk changed since the plan was made; run the installer again",
        )
    if (
        installed is not None
        and not installed.install_complete
        and mode in (InstallMode.UPGRADE, InstallMode.REPAIR)
    ):
        raise Refused(
            f"{plan.target}: the Engine {installed.version} installation on it is incomplete",
            hint="erase and reinstall it",
        )
    decision = rules.decide(
        manifest.version,
        manifest.upgrade_from,
        installed.version if installed else None,
        installed.layout if installed else None,
        medium_layout=manifest.layout,
    )
    rules.require_allowed(decision, mode)
    if installed is not None and mode in (InstallMode.UPGRADE, InstallMode.REPAIR):
        check_upgrade(
            installed.version, str(manifest.version), tuple(str(v) for v in manifest.upgrade_from)
        )


def _check_disk_id(plan: InstallPlan, found: Installation | NoInstallation) -> None:
    """The disk is still the one whose id was confirmed (or shown) when the plan was made.

    Run under the exclusive lock, so the disk cannot change between this look and the writes.
    An erase of a disk that holds anything needs the id: an erase nobody confirmed against
    this very disk is refused, not carried out.
    """
    blank = isinstance(found, NoInstallation) and found.kind is NoInstallationKind.BLANK
    if plan.expected_disk_id is None:
        if plan.mode is InstallMode.ERASE and not blank:
            raise Refused(
                f"{plan.target}: an erase needs the disk id it was confirmed with "
                f"(this disk's id is {found.disk_id}); nothing was written",
                hint=f'answer file: [existing] action = "erase" and confirm_erase = '
                f'"{found.disk_id}"',
            )
        return
    if found.disk_id != plan.expected_disk_id:
        now = found.disk_id if found.disk_id is not None else "none (a blank disk)"
        raise Refused(
            f"{plan.target}: the disk changed since it was confirmed (disk id "
            f"{plan.expected_disk_id} expected, now {now}); nothing was written",
            hint="run the installer again and confirm the disk as it is now",
        )


def _notes(installed: Installation, image: SystemImage) -> tuple[VmNote, ...]:
    return rules.vm_notes(installed.vms, image.version, image.pv_drivers)


@dataclass(frozen=True)
class CheckedPlan:
    """What the read-only checks learnt: the run may go ahead on this disk with this image."""

    disk_size: int
    image: SystemImage
    layout: DiskLayout  # the medium's
    found: Installation | NoInstallation


def _steps_for(plan: InstallPlan) -> tuple[Checkpoint, ...]:
    fresh = plan.mode in (InstallMode.FRESH, InstallMode.ERASE)
    return tuple(FRESH_STEPS if fresh else UPGRADE_STEPS)


def _in_use_hint(holders: tuple[str, ...]) -> str:
    """What to do about each kind of holder the probe reports."""
    steps = []
    if any(h.startswith("/dev/loop") for h in holders):
        steps.append("detach its loop devices (losetup -d)")
    if any("EngineKit" in h for h in holders):
        steps.append("wait for the other engine-disk boot or engine-install to finish")
    if any("QEMU" in h for h in holders):
        steps.append("shut down the virtual machine using it")
    return "; ".join(steps or ["close whatever has it open"]) + ", then try again"


def check_plan(plan: InstallPlan, tracker: StepTracker | None = None) -> CheckedPlan:
    """Every refusal `run_plan` can make, and nothing that writes: the EULA, the target, the
    medium's verification, the probe, the guard, and whether the payload fits the disk's
    slots and ESP and every partition the run touches can be read. The real engine runs it
    first; the dry run runs it alone, so a dry run refuses exactly what the real run would."""
    if not plan.eula_accepted:
        raise Refused(
            "the end-user licence agreement was not accepted; nothing was written",
            hint="accept the EULA ([eula] accept = true) to install",
        )
    tracker = tracker or StepTracker(_steps_for(plan), None)
    refuse_medium_as_target(plan.target, plan.medium)
    disk_size = check_target(plan.target, device=plan.target_is_device)
    tracker.reach(Checkpoint.VERIFY_MEDIUM)
    with _open_medium(plan.medium) as medium:
        image = _verify_medium(medium, plan, tracker)
        layout = medium.manifest.layout
        tracker.reach(Checkpoint.PROBE)
        found = probe(plan.target)
        _guard(plan, found, medium)
        # What the disk can hold and whether what the run touches can be read: known now,
        # so refused now, not after slot B was emptied or the disk wiped.
        check_fit(plan, image, layout, disk_size, _installed(found))
        check_readable(plan, image, _installed(found))
    return CheckedPlan(disk_size, image, layout, found)


@contextmanager
def hold_target(plan: InstallPlan, *, exclusive: bool) -> Iterator[None]:
    """Hold the target's disk lock for the body, or refuse with one line naming the holder.

    The real run holds it exclusively from before the probe to the last write, so no other
    engine-install or engine-disk boot can change the disk between the guard's look at it and
    the engine's writes (every `open_installation` inside shares this lock). The dry run holds
    a shared one only while it checks: it refuses while a writer is busy, and leaves nothing
    behind.
    """
    # A missing or non-file target gets its own clear line first.
    target_size(plan.target, device=plan.target_is_device)
    with hold_disk(plan.target, exclusive=exclusive):
        yield


@contextmanager
def hold_disk(path: Path, *, exclusive: bool) -> Iterator[None]:
    """`disk_lock` with the installer's refusal: one line naming the holder."""
    try:
        with disk_lock(path, exclusive=exclusive):
            yield
    except DiskInUse as exc:
        raise Refused(
            f"{exc.message}; nothing was written",
            hint=exc.hint or "wait until the other run ends, then try again",
        ) from None


def _check_before_lock(plan: InstallPlan) -> None:
    """The refusals that need no lock come first, in check_plan's order: EULA, then target."""
    if not plan.eula_accepted:
        check_plan(plan)  # raises the EULA refusal before the disk is touched at all
    refuse_medium_as_target(plan.target, plan.medium)
    check_target(plan.target, device=plan.target_is_device)


def dry_run_check(plan: InstallPlan) -> CheckedPlan:
    """check_plan under a shared lock: the dry run refuses a disk another run is writing."""
    _check_before_lock(plan)
    with hold_target(plan, exclusive=False):
        return check_plan(plan)


def run_plan(plan: InstallPlan, progress: ProgressCallback | None = None) -> InstallReport:
    """Carry out `plan` on its target and report what was done (see the module docstring)."""
    _check_before_lock(plan)
    with hold_target(plan, exclusive=True):
        return _run_locked(plan, progress)


def _run_locked(plan: InstallPlan, progress: ProgressCallback | None) -> InstallReport:
    tracker = StepTracker(_steps_for(plan), progress)
    checked = check_plan(plan, tracker)
    disk_size, image, layout, found = (
        checked.disk_size,
        checked.image,
        checked.layout,
        checked.found,
    )
    installed = _installed(found)

    if plan.mode in (InstallMode.FRESH, InstallMode.ERASE):
        old_config = None  # erase means erase: nothing of the old installation is kept
        slot = fresh_install(plan, image, layout, disk_size, tracker, old_config)
        tracker.reach(Checkpoint.DONE)
        return InstallReport(
            plan=plan,
            installed_version=image.version,
            slot=slot.value if slot else None,
            upgrade_status=UpgradeStatus.BLANK,
            steps_done=tracker.done,
        )

    assert installed is not None  # _guard refused UPGRADE/REPAIR without an installation
    if installed.repairs:
        # Damage the probe can repair goes first: the steps below need a sound disk.
        repair_damage(plan.target, installed)
    if (
        plan.mode is InstallMode.UPGRADE
        and installed.layout is DiskLayout.MBR
        and layout is DiskLayout.GPT_AB
    ):
        tracker.use_steps(MIGRATE_STEPS)
        switch = migrate_mbr_to_gpt(plan, image, installed.version, tracker)
        tracker.reach(Checkpoint.DONE)
        return InstallReport(
            plan=plan,
            installed_version=image.version,
            slot=switch.new_slot.value,
            upgrade_status=UpgradeStatus.INSTALLED_REBOOT_REQUIRED,
            vm_notes=_notes(installed, image),
            steps_done=tracker.done,
        )
    if installed.layout is DiskLayout.MBR or layout is DiskLayout.MBR:
        if plan.mode is InstallMode.UPGRADE:
            raise refuse_mbr_upgrade(installed.version, image.version)
        repair_mbr(plan, image, tracker)
        tracker.reach(Checkpoint.DONE)
        return InstallReport(
            plan=plan,
            installed_version=image.version,
            slot=None,
            upgrade_status=UpgradeStatus.BLANK,
            steps_done=tracker.done,
        )

    repair = plan.mode is InstallMode.REPAIR
    switch = upgrade_in_place(plan, image, installed.version, tracker, repair=repair)
    tracker.reach(Checkpoint.DONE)
    notes = () if repair else _notes(installed, image)
    if EngineVersion.parse(image.version) == EngineVersion.parse(installed.version):
        notes = ()
    return InstallReport(
        plan=plan,
        installed_version=image.version,
        slot=switch.new_slot.value,
        upgrade_status=UpgradeStatus.INSTALLED_REBOOT_REQUIRED,
        vm_notes=notes,
        steps_done=tracker.done,
    )
