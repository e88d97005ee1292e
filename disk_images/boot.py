"""Boot an installed Engine disk in QEMU and complete its first boot, like systemd-bless-boot.

The disk boots as a virtio disk, NOT in snapshot mode: systemd-boot's boot counting renames
entries on the real ESP (`engine-2-b+1-0.conf` -> `engine-2-b+0-1.conf`), and that rename is how
a failed new slot falls back to the old one. After the installed Engine prints
`ENGINE RUNNING version=<v> slot=<A|B> vms=<n>`, the first boot is completed on the image: the
booted entry is blessed (its `+tries-done` suffix renamed away), the booted slot becomes the
active one and the upgrade status becomes Blank. If a pending slot does not boot, the disk is
booted again right away (same call) so systemd-boot falls back to the old slot, and the status
becomes "Failed".

A boot that was stopped before the Engine ran (its --timeout ran out, or Ctrl-C) proves nothing
about the new slot, so the try systemd-boot counted for it is given back: the entry is renamed
to the name it had before the power-on. The seam `ENGINEKIT_BOOT_STOP_AFTER_COUNT=timeout` (or
`=interrupt`) stops a boot at the moment systemd-boot has counted its try, as a timeout (or a
Ctrl-C) there would; the tests use it instead of a short clock.

This module also owns the boot entry names, `engine-<generation>-<slot>[+<tries>-<done>].conf`,
and the order systemd-boot gives them, because both the install engine and this module need them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from disk_images.errors import InvalidDiskImage, NotAnEngineInstallation
from disk_images.esp_check import EspCheck, esp_entries
from disk_images.layout import (
    ESP_ENTRIES_DIR,
    STATE_PATH,
    BootEntryName,
    PartitionRole,
    Slot,
    partition_number,
)
from disk_images.lock import disk_lock
from disk_images.probe import Installation, probe
from disk_images.session import InstallationSession, open_installation
from disk_images.state import EngineState, UpgradeStatus
from enginekit.errors import EngineKitError
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
STOP_SEAM = "ENGINEKIT_BOOT_STOP_AFTER_COUNT"


class BootInterrupted(EngineKitError):
    """Ctrl-C during a boot; the message says what became of the try the boot had spent."""

    exit_status = 130


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
    stopped: bool = False  # ended by the timeout (or the stop seam), not by the guest

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
    failed_slot: Slot | None = None  # the pending slot that did not boot (with fell_back)
    restored: tuple[tuple[str, str], ...] = ()  # (spent name, name given back) per entry
    next_entry: str | None = None  # the entry systemd-boot starts next, when nothing booted
    warnings: tuple[str, ...] = ()  # ESP problems found before the power-on, a slot switch

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
            "failed_slot": self.failed_slot.value if self.failed_slot else None,
            "restored": [{"spent": a, "restored": b} for a, b in self.restored],
            "next_entry": self.next_entry,
            "warnings": list(self.warnings),
        }


def _entries(session: InstallationSession) -> list[BootEntryName]:
    esp = session.esp
    if not esp.is_dir(ESP_ENTRIES_DIR):
        return []
    found = (BootEntryName.parse(name) for name in esp.list(ESP_ENTRIES_DIR))
    return [e for e in found if e is not None]


def _esp_offset(found: Installation) -> int | None:
    if found.layout is not DiskLayout.GPT_AB:
        return None
    number = partition_number(found.layout, PartitionRole.ESP)
    return next(p.start_bytes for p in found.partitions if p.number == number)


def _read_entries(path: Path, esp_offset: int | None) -> list[BootEntryName]:
    """The ESP's entries as they are on the image now (read-only, mtools; none on MBR)."""
    return [] if esp_offset is None else list(esp_entries(path, esp_offset))


def _counted(before: list[BootEntryName], after: list[BootEntryName]) -> list[BootEntryName]:
    """Entries systemd-boot renamed during a boot: new names of counting entries."""
    return [e for e in after if e not in before and e.tries_left is not None]


def _stop_seam(
    path: Path, esp_offset: int | None, before: list[BootEntryName], fired: list[bool]
) -> Callable[[], bool] | None:
    """The `ENGINEKIT_BOOT_STOP_AFTER_COUNT` seam: stop once systemd-boot counted a try."""
    mode = os.environ.get(STOP_SEAM, "")
    if not mode or esp_offset is None:
        return None
    if mode not in ("timeout", "interrupt"):
        raise InvalidDiskImage(f"{STOP_SEAM}={mode!r}: use 'timeout' or 'interrupt'")

    def counted() -> bool:
        if not _counted(before, _read_entries(path, esp_offset)):
            return False
        fired.append(True)
        if mode == "interrupt":
            raise KeyboardInterrupt
        return True

    return counted


def _booted_entry(
    before: list[BootEntryName], after: list[BootEntryName], slot: Slot | None
) -> str | None:
    """The entry this boot really used: the one systemd-boot counted, else the first entry
    for the slot that came up (or, when nothing came up, the first in systemd-boot's order)."""
    counted = _counted(before, after)
    if counted:
        return counted[0].file_name
    order = boot_order(before)
    if slot is not None:
        order = [e for e in order if e.slot is slot] or order
    return order[0].file_name if order else None


def _one_boot(
    path: Path, firmware: Firmware, timeout: float, esp_offset: int | None, bus: DriveKind
) -> tuple[BootAttempt, list[BootEntryName]]:
    """Power the disk on once; returns the attempt and the ESP's entries after it."""
    before = _read_entries(path, esp_offset)
    spec = BootSpec(firmware=firmware, drives=(Drive(path, bus, snapshot=False),))
    fired: list[bool] = []
    stop = _stop_seam(path, esp_offset, before, fired)
    result = boot(spec, RUNNING, timeout=timeout, fail=FAIL_LINES, stop=stop)
    after = _read_entries(path, esp_offset)
    match = RUNNING.search(result.matched or "")
    if match:
        slot = Slot(match.group(2))
        attempt = BootAttempt(
            version=match.group(1),
            slot=slot,
            vms=int(match.group(3)),
            entry=_booted_entry(before, after, slot),
            failure=None,
            seconds=result.seconds,
            console_tail=result.tail(),
        )
        return attempt, after
    failed = FAILED.search(result.output)
    if fired:
        failure = f"stopped once systemd-boot had counted the try ({STOP_SEAM})"
    elif failed:
        failure = f"ENGINE BOOT FAILED reason={failed.group(1)}"
    elif result.timed_out:
        failure = f"no ENGINE RUNNING line within {timeout:g} s"
    elif "Kernel panic" in result.output:
        failure = "kernel panic"
    else:
        failure = "the machine stopped without printing ENGINE RUNNING"
    entry = _booted_entry(before, after, None)
    attempt = BootAttempt(
        None, None, None, entry, failure, result.seconds, result.tail(), result.timed_out
    )
    return attempt, after


def _give_back_tries(
    path: Path, layout: DiskLayout, before: list[BootEntryName], after: list[BootEntryName]
) -> tuple[tuple[str, str], ...]:
    """Rename every entry a stopped boot counted back to its name before the power-on."""
    pairs = []
    for spent in _counted(before, after):
        for old in before:
            if (old.generation, old.slot) == (spent.generation, spent.slot) and old not in after:
                pairs.append((spent, old))
    if pairs:
        with open_installation(path, writable=True, layout=layout) as session:
            for spent, old in pairs:
                session.esp.rename(spent.path, old.path)
    return tuple((spent.file_name, old.file_name) for spent, old in pairs)


def _next_entry(path: Path, esp_offset: int | None) -> str | None:
    order = boot_order(_read_entries(path, esp_offset))
    return order[0].file_name if order else None


def _interrupted_text(
    path: Path, number: int, restored: tuple[tuple[str, str], ...], next_entry: str | None
) -> str:
    what = f"{path}: interrupted during boot {number}; "
    if restored:
        what += "the try it had spent was given back (" + ", ".join(
            f"{spent} -> {back}" for spent, back in restored
        )
        what += ")"
    else:
        what += "no try had been spent"
    if next_entry:
        what += f"; the next boot starts {next_entry}"
    return what


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


def _esp_repair_hint(esp: EspCheck) -> str:
    """What brings back a disk whose ESP cannot boot: a repair rewrites the boot loader and
    the entries on a readable FAT; one with no FAT left cannot be written by any install."""
    if esp.readable:
        return (
            "repair the installation from a medium of the installed version "
            '(engine-install, action = "repair")'
        )
    return (
        "the ESP holds no filesystem a repair could write to: restore the disk from a backup, "
        'or erase and reinstall from the Engine medium (engine-install, action = "erase"; '
        "the VMs are lost)"
    )


def boot_installed_disk(
    path: Path, timeout: float = 120.0, bus: DriveKind = DriveKind.DISK
) -> DiskBootResult:
    """Boot the Engine on `path` (OVMF for gpt-ab, SeaBIOS for mbr) and complete its first boot,
    the disk on `bus` (virtio by default; SATA or NVMe as in a laptop).

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
        return _boot_locked(path, timeout, bus)


def _boot_locked(path: Path, timeout: float, bus: DriveKind) -> DiskBootResult:
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
    warnings: list[str] = []
    if found.esp is not None:
        if not found.esp.can_boot:
            raise InvalidDiskImage(
                f"{path}: cannot boot: {'; '.join(found.esp.problems)}",
                hint=_esp_repair_hint(found.esp),
            )
        warnings.extend(found.esp.problems)
    esp_offset = _esp_offset(found)
    firmware = Firmware.UEFI if layout is DiskLayout.GPT_AB else Firmware.BIOS
    attempts: list[BootAttempt] = []
    restored: tuple[tuple[str, str], ...] = ()
    before: list[BootEntryName] = []
    try:
        while len(attempts) < MAX_ATTEMPTS:
            before = _read_entries(path, esp_offset)
            attempt, after = _one_boot(path, firmware, timeout, esp_offset, bus)
            attempts.append(attempt)
            if attempt.running:
                break
            if attempt.stopped:
                # Stopped before the Engine ran: the new slot was not proven bad.
                restored = _give_back_tries(path, layout, before, after)
                break
            if layout is not DiskLayout.GPT_AB or after == before:
                break  # nothing changed on the ESP: the next boot would fail the same way
    except KeyboardInterrupt:
        given = _give_back_tries(path, layout, before, _read_entries(path, esp_offset))
        text = _interrupted_text(path, len(attempts) + 1, given, _next_entry(path, esp_offset))
        raise BootInterrupted(
            text, hint=f"boot it again to finish the first boot: engine-disk boot {path}"
        ) from None
    running = next((a for a in attempts if a.running), None)
    with open_installation(path, writable=True, layout=layout) as session:
        state, blessed, fell_back = _complete_first_boot(
            session, running.slot if running else None, layout
        )
    if (
        running is not None
        and not fell_back
        and found.active_slot is not None
        and found.state.pending_slot is None
        and running.slot is not found.active_slot
    ):
        warnings.append(
            f"slot {found.active_slot.value} did not boot; slot {state.active_slot} booted "
            "instead and is now the active slot"
        )
    return DiskBootResult(
        path=path,
        firmware=firmware,
        attempts=tuple(attempts),
        upgrade_status=state.upgrade_status,
        active_slot=state.active_slot,
        blessed=blessed,
        fell_back=fell_back,
        failed_slot=found.state.pending_slot if fell_back else None,
        restored=restored,
        next_entry=None if running else _next_entry(path, esp_offset),
        warnings=tuple(warnings),
    )
