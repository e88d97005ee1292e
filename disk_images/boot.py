"""Boot an installed Engine disk in QEMU and complete its first boot, like systemd-bless-boot.

The disk boots as a virtio disk, NOT in snapshot mode: systemd-boot's boot counting renames
entries on the real ESP (`engine-2-b+1-0.conf` -> `engine-2-b+0-1.conf`), and that rename is how
a failed new slot falls back to the old one. After the installed Engine prints
`ENGINE RUNNING version=<v> slot=<A|B> vms=<n>`, the first boot is completed on the image: the
booted entry is blessed (its `+tries-done` suffix renamed away), the booted slot becomes the
active one and the upgrade status becomes Blank. If a pending slot does not boot, the disk is
booted again right away (same call) so systemd-boot falls back to the old slot, and the status
becomes "Failed".

This module also owns the boot entry names, `engine-<generation>-<slot>[+<tries>-<done>].conf`,
and the order systemd-boot gives them, because both the install engine and this module need them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from disk_images.errors import InvalidDiskImage, NotAnEngineInstallation
from disk_images.layout import ESP_ENTRIES_DIR, STATE_PATH, BootEntryName, Slot
from disk_images.lock import disk_lock
from disk_images.probe import Installation, probe
from disk_images.session import InstallationSession, open_installation
from disk_images.state import EngineState, UpgradeStatus
from enginekit.qemu import BootSpec, Drive, DriveKind, Firmware, boot
from enginekit.versions import DiskLayout


def boot_order(names: Iterable[BootEntryName]) -> list[BootEntryName]:
    """The order systemd-boot lists the entries in; with `default engine-*` the first boots.

    Entries with no tries left go last; otherwise ids compare version-aware, newest first
    (systemd-boot's `-strverscmp_improved(a->id, b->id)` for entries without a sort-key).
    """
    return sorted(names, key=lambda n: (n.tries_left == 0, -n.generation, n.slot is Slot.A))


RUNNING = re.compile(r"ENGINE RUNNING version=(\S+) slot=([AB]) vms=(\d+)")
FAILED = re.compile(r"ENGINE BOOT FAILED reason=(\S+)")
# A boot that gets here cannot succeed any more: stop waiting at once.
FAIL_LINES = re.compile(
    r"ENGINE BOOT FAILED|Kernel panic|No bootable device|Boot failed|not found\. Press"
)
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class BootAttempt:
    """One power-on of the disk and what the serial console showed."""

    version: str | None
    slot: Slot | None
    vms: int | None
    entry: str | None  # the ESP entry file this boot used (after systemd-boot's rename)
    failure: str | None  # None when ENGINE RUNNING was printed
    seconds: float
    console_tail: str

    @property
    def running(self) -> bool:
        return self.failure is None

    def as_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "slot": self.slot.value if self.slot else None,
            "vms": self.vms,
            "entry": self.entry,
            "failure": self.failure,
            "seconds": round(self.seconds, 2),
        }


@dataclass(frozen=True)
class DiskBootResult:
    """What `boot_installed_disk` saw and what it recorded on the disk afterwards."""

    path: Path
    firmware: Firmware
    attempts: tuple[BootAttempt, ...]
    upgrade_status: UpgradeStatus  # after the first boot was completed
    active_slot: Slot | None
    blessed: str | None  # the entry renamed from `+t-d` to plain, if any
    fell_back: bool  # a pending slot failed and the old one booted instead

    @property
    def running(self) -> BootAttempt | None:
        """The attempt that reached ENGINE RUNNING, if any."""
        for attempt in self.attempts:
            if attempt.running:
                return attempt
        return None

    @property
    def ok(self) -> bool:
        return self.running is not None

    def as_json(self) -> dict[str, object]:
        running = self.running
        return {
            "disk": str(self.path),
            "firmware": self.firmware.value,
            "running": running.as_json() if running else None,
            "attempts": [a.as_json() for a in self.attempts],
            "upgrade_status": self.upgrade_status.value,
            "active_slot": self.active_slot.value if self.active_slot else None,
            "blessed": self.blessed,
            "fell_back": self.fell_back,
        }


def _entries(session: InstallationSession) -> list[BootEntryName]:
    esp = session.esp
    if not esp.is_dir(ESP_ENTRIES_DIR):
        return []
    found = (BootEntryName.parse(name) for name in esp.list(ESP_ENTRIES_DIR))
    return [e for e in found if e is not None]


def _read_entries(path: Path, layout: DiskLayout) -> list[BootEntryName]:
    if layout is not DiskLayout.GPT_AB:
        return []
    with open_installation(path, writable=False, layout=layout) as session:
        return _entries(session)


def _one_boot(
    path: Path, firmware: Firmware, timeout: float, before: list[BootEntryName]
) -> BootAttempt:
    spec = BootSpec(firmware=firmware, drives=(Drive(path, DriveKind.DISK, snapshot=False),))
    result = boot(spec, RUNNING, timeout=timeout, fail=FAIL_LINES)
    entry = None
    expected = boot_order(before)
    if expected:
        # systemd-boot booted the first entry in its order (renaming it if it counts tries).
        entry = expected[0].file_name
        if expected[0].tries_left is not None:
            entry = BootEntryName(
                expected[0].generation,
                expected[0].slot,
                max(0, expected[0].tries_left - 1),
                (expected[0].tries_done or 0) + 1,
            ).file_name
    match = RUNNING.search(result.matched or "")
    if match:
        return BootAttempt(
            version=match.group(1),
            slot=Slot(match.group(2)),
            vms=int(match.group(3)),
            entry=entry,
            failure=None,
            seconds=result.seconds,
            console_tail=result.tail(),
        )
    failed = FAILED.search(result.output)
    if failed:
        failure = f"ENGINE BOOT FAILED reason={failed.group(1)}"
    elif result.timed_out:
        failure = f"no ENGINE RUNNING line within {timeout:g} s"
    elif "Kernel panic" in result.output:
        failure = "kernel panic"
    else:
        failure = "the machine stopped without printing ENGINE RUNNING"
    return BootAttempt(None, None, None, entry, failure, result.seconds, result.tail())


def _complete_first_boot(
    session: InstallationSession, booted: Slot | None, layout: DiskLayout
) -> tuple[EngineState, str | None, bool]:
    """Record the outcome on the disk: bless the booted entry, set active slot and status.

    Returns (new state, blessed entry file name or None, fell back).
    """
    state = session.read_state()
    if state is None:
        raise NotAnEngineInstallation(f"{session.path}: no {STATE_PATH} on storage")
    if layout is not DiskLayout.GPT_AB:
        if booted is not None and state.upgrade_status is UpgradeStatus.INSTALLED_REBOOT_REQUIRED:
            state = replace(state, upgrade_status=UpgradeStatus.BLANK)
            session.write_state(state)
        return state, None, False
    blessed = None
    fell_back = False
    new_state = state
    # Nothing booted (a timeout, a broken firmware) says nothing about the new slot: the
    # upgrade state stays as it was. Only a fallback whose new entry spent its try is Failed.
    if booted is not None:
        entries = [e for e in _entries(session) if e.slot is booted]
        counting = [e for e in entries if e.tries_left is not None]
        entry = max(entries, key=lambda e: e.generation) if entries else None
        if counting:
            # Like systemd-bless-boot: the entry proved itself, drop its counter.
            newest = max(counting, key=lambda e: e.generation)
            good = BootEntryName(newest.generation, newest.slot)
            session.esp.rename(newest.path, good.path)
            blessed = good.file_name
            entry = good
        generation = entry.generation if entry is not None else state.generation
        if state.pending_slot is booted or (counting and booted is not state.active_slot):
            new_state = EngineState(
                active_slot=booted,
                upgrade_status=UpgradeStatus.BLANK,
                generation=generation,
                pending_slot=None,
                previous_version=state.previous_version,
                install_complete=state.install_complete,
            )
        elif state.pending_slot is not None and _pending_try_used(session, state.pending_slot):
            fell_back = True
            new_state = EngineState(
                active_slot=booted,
                upgrade_status=UpgradeStatus.FAILED,
                generation=generation,
                pending_slot=None,
                previous_version=state.previous_version,
                install_complete=state.install_complete,
            )
        elif booted is not state.active_slot:
            new_state = replace(state, active_slot=booted, generation=generation)
    if new_state != state:
        session.write_state(new_state)
    return new_state, blessed, fell_back


def _pending_try_used(session: InstallationSession, pending: Slot) -> bool:
    """Whether systemd-boot spent the new slot's try: its entry counts and has none left."""
    return any(
        e.slot is pending and e.tries_left == 0 and (e.tries_done or 0) > 0
        for e in _entries(session)
    )


def boot_installed_disk(path: Path, timeout: float = 120.0) -> DiskBootResult:
    """Boot the Engine on `path` (OVMF for gpt-ab, SeaBIOS for mbr) and complete its first boot.

    A failed attempt is followed right away by another one while systemd-boot still has an
    entry left to fall back to (its try counter changed), at most MAX_ATTEMPTS in all.
    """
    path = Path(path)
    if not timeout > 0:
        raise InvalidDiskImage(f"boot timeout must be more than 0 s (got {timeout:g})")
    if not path.is_file():
        raise InvalidDiskImage(f"{path}: not a regular file (a disk image is needed)")
    # The lock is held across every power-on and the final writes: an install or upgrade
    # started meanwhile on the same image is refused instead of running under the VM.
    with disk_lock(path, exclusive=True):
        return _boot_locked(path, timeout)


def _boot_locked(path: Path, timeout: float) -> DiskBootResult:
    found = probe(path)
    if not isinstance(found, Installation):
        raise NotAnEngineInstallation(
            f"{path}: no Engine installation to boot: {found.reason}",
            hint="install one first, e.g. engine-disk create DISK.img --engine 5.0.0",
        )
    if found.in_use_by:
        raise InvalidDiskImage(
            f"{path}: the disk is in use ({', '.join(found.in_use_by)})",
            hint="close whatever has it attached and try again",
        )
    layout = found.layout
    firmware = Firmware.UEFI if layout is DiskLayout.GPT_AB else Firmware.BIOS
    attempts: list[BootAttempt] = []
    while len(attempts) < MAX_ATTEMPTS:
        before = _read_entries(path, layout)
        attempt = _one_boot(path, firmware, timeout, before)
        attempts.append(attempt)
        if attempt.running:
            break
        after = _read_entries(path, layout)
        if layout is not DiskLayout.GPT_AB or after == before:
            break  # nothing changed on the ESP: the next boot would fail the same way
    running = next((a for a in attempts if a.running), None)
    with open_installation(path, writable=True, layout=layout) as session:
        state, blessed, fell_back = _complete_first_boot(
            session, running.slot if running else None, layout
        )
    return DiskBootResult(
        path=path,
        firmware=firmware,
        attempts=tuple(attempts),
        upgrade_status=state.upgrade_status,
        active_slot=state.active_slot,
        blessed=blessed,
        fell_back=fell_back,
    )
