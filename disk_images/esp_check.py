"""What a UEFI boot of an Engine disk needs from its ESP, checked read-only with mtools.

The firmware needs a FAT filesystem with `/EFI/BOOT/BOOTX64.EFI`; systemd-boot needs
`/loader/loader.conf` and at least one entry in `/loader/entries`; an entry can boot only when
the `linux` and `initrd` files it names exist (systemd-boot skips it otherwise and boots the
next one). `check_esp` lists every problem it finds, and which entries can boot, so `inspect`
can show them and `boot` can refuse or warn before QEMU starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from disk_images.esp_reader import EspReader
from disk_images.layout import ESP_ENTRIES_DIR, ESP_LOADER_CONF, BootEntryName

FIRMWARE_LOADER = "/EFI/BOOT/BOOTX64.EFI"


@dataclass(frozen=True)
class EspCheck:
    """The ESP as a boot would find it."""

    readable: bool  # a FAT filesystem mtools can read
    firmware_loader: bool  # /EFI/BOOT/BOOTX64.EFI exists
    entries: tuple[BootEntryName, ...]  # parsed entry names, sorted by file name
    unbootable: tuple[str, ...]  # entry file names whose kernel or initrd is missing
    problems: tuple[str, ...]  # every problem, one sentence each

    @property
    def bootable_entries(self) -> tuple[BootEntryName, ...]:
        return tuple(e for e in self.entries if e.file_name not in self.unbootable)

    @property
    def can_boot(self) -> bool:
        """Whether the firmware finds a loader and systemd-boot at least one entry to boot."""
        return self.readable and self.firmware_loader and bool(self.bootable_entries)


def esp_paths(image: Path, offset: int) -> frozenset[str] | None:
    """Every path on the FAT filesystem at `offset` (lower case, directories end in '/'),
    or None when there is no readable FAT filesystem there."""
    return EspReader(image, offset).paths()


def esp_entries(image: Path, offset: int) -> tuple[BootEntryName, ...]:
    """The Engine boot entries in the ESP's entries directory, sorted by file name."""
    paths = esp_paths(image, offset) or frozenset()
    return _entries_in(paths)


def _entries_in(paths: frozenset[str]) -> tuple[BootEntryName, ...]:
    prefix = ESP_ENTRIES_DIR.lower().rstrip("/") + "/"
    found = []
    for path in paths:
        if path.startswith(prefix) and "/" not in path[len(prefix) :]:
            parsed = BootEntryName.parse(path[len(prefix) :])
            if parsed is not None:
                found.append(parsed)
    return tuple(sorted(found, key=lambda e: e.file_name))


def _entry_files(text: str) -> list[tuple[str, str]]:
    """(key, path) of the `linux` and `initrd` lines of a Type #1 entry."""
    files = []
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key in ("linux", "initrd") and value.strip():
            files.append((key, value.strip()))
    return files


def check_esp(image: Path, offset: int) -> EspCheck:
    """Check what a boot needs from the ESP at `offset` of `image`, reading only."""
    reader = EspReader(image, offset)
    paths = reader.paths()
    if paths is None:
        return EspCheck(
            readable=False,
            firmware_loader=False,
            entries=(),
            unbootable=(),
            problems=("ESP: no readable FAT filesystem (the firmware cannot start a boot loader)",),
        )
    problems: list[str] = []
    firmware_loader = FIRMWARE_LOADER.lower() in paths
    if not firmware_loader:
        problems.append(f"ESP: {FIRMWARE_LOADER} is missing (the firmware has no boot loader)")
    if ESP_LOADER_CONF.lower() not in paths:
        problems.append(
            f"ESP: {ESP_LOADER_CONF} is missing (systemd-boot ignores 'default engine-*')"
        )
    entries = _entries_in(paths)
    if not entries:
        problems.append(f"ESP: no Engine boot entry in {ESP_ENTRIES_DIR}")
    unbootable: list[str] = []
    for entry in entries:
        data = reader.read(entry.path)
        if data is None:
            problems.append(f"ESP: {entry.path} cannot be read")
            unbootable.append(entry.file_name)
            continue
        files = _entry_files(data.decode("utf-8", "replace"))
        if not any(key == "linux" for key, _ in files):
            problems.append(f"ESP: {entry.path} names no linux kernel")
            unbootable.append(entry.file_name)
            continue
        missing = [(key, path) for key, path in files if path.lower() not in paths]
        for key, path in missing:
            what = "kernel" if key == "linux" else "initrd"
            problems.append(f"ESP: {entry.path}: its {what} {path} is missing")
        if missing:
            unbootable.append(entry.file_name)
    if entries and len(unbootable) == len(entries):
        problems.append("ESP: no boot entry can boot")
    return EspCheck(True, firmware_loader, entries, tuple(unbootable), tuple(problems))
