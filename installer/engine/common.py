"""Steps shared by fresh install, upgrade and repair: write and verify a system slot, put a
slot's kernel on the ESP, manage boot entries, and the engine's own error for a bad write.

All writes go through a `disk_images.session.InstallationSession`, so every loop device and
mount is released even when the process is killed (autoclear + private mount namespace).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass

from disk_images.layout import (
    ESP_BOOTLOADER,
    ESP_ENTRIES_DIR,
    ESP_LOADER_CONF,
    MBR_BOOT_DIR,
    RELEASE_PATH,
    BootEntryName,
    Slot,
    esp_slot_dir,
)
from disk_images.partition_files import DirectoryFiles, PartitionFiles
from disk_images.state import EngineRelease
from enginekit.errors import HostError
from installer.engine import bootloader
from installer.engine.payload import Medium, SlotFile, read_listed, read_verified, slot_files


class SlotVerificationFailed(HostError):
    """What was read back from a freshly written slot differs from what was written."""


@dataclass(frozen=True)
class SystemImage:
    """The verified system payload of a medium, read once and laid down as often as needed."""

    version: str
    pv_drivers: str
    files: tuple[tuple[SlotFile, bytes], ...]
    kernel: bytes
    initrd: bytes

    @classmethod
    def read(cls, medium: Medium) -> SystemImage:
        manifest = medium.manifest
        files = tuple(
            (f, read_verified(medium, f.source, f.size, f.sha256)) for f in slot_files(manifest)
        )
        return cls(
            version=str(manifest.version),
            pv_drivers=str(manifest.pv_drivers),
            files=files,
            kernel=read_listed(medium, manifest.system.kernel),
            initrd=read_listed(medium, manifest.system.initrd),
        )

    def release(self, slot: Slot | None) -> EngineRelease:
        return EngineRelease(version=self.version, slot=slot, pv_drivers=self.pv_drivers)


def write_slot(
    fs: PartitionFiles,
    image: SystemImage,
    slot: Slot | None,
    advance: Callable[[float], None] | None = None,
    *,
    with_boot_files: bool = False,
) -> None:
    """Lay the payload into a (freshly formatted) system filesystem; engine-release goes last,
    so a slot interrupted midway never looks like a system."""
    total = len(image.files) or 1
    for index, (entry, data) in enumerate(image.files):
        fs.makedirs(posixpath.dirname(entry.dest) or "/")
        fs.write_atomic(entry.dest, data)
        if advance is not None:
            advance((index + 1) / total)
    if with_boot_files:
        fs.makedirs(MBR_BOOT_DIR)
        fs.write_atomic(f"{MBR_BOOT_DIR}/{bootloader.KERNEL_NAME}", image.kernel)
        fs.write_atomic(f"{MBR_BOOT_DIR}/{bootloader.INITRD_NAME}", image.initrd)
    fs.write_atomic(RELEASE_PATH, image.release(slot).to_json())


def _drop_cached(fs: PartitionFiles, path: str) -> None:
    """Evict a mounted file's pages so the read-back comes from the device, not from memory."""
    if not isinstance(fs, DirectoryFiles):
        return  # mtools reads the image file itself; there is no filesystem cache in between
    host = fs.root / path.lstrip("/")
    try:
        fd = os.open(host, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # the read below reports it
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _check_same(fs: PartitionFiles, path: str, expected: bytes) -> None:
    try:
        _drop_cached(fs, path)
        actual = fs.read(path)
    except Exception as exc:  # noqa: BLE001 - any read failure is a failed verification
        raise SlotVerificationFailed(
            f"{fs.label}:{path} cannot be read back after writing it ({exc})",
            hint="the disk may be failing; nothing was switched, the old Engine still boots",
        ) from None
    if hashlib.sha256(actual).digest() != hashlib.sha256(expected).digest():
        raise SlotVerificationFailed(
            f"{fs.label}:{path} reads back different from what was written",
            hint="the disk may be failing; nothing was switched, the old Engine still boots",
        )


def verify_slot(
    fs: PartitionFiles, image: SystemImage, slot: Slot | None, *, with_boot_files: bool = False
) -> None:
    """Re-read every file of a written slot and compare its SHA-256."""
    for entry, data in image.files:
        _check_same(fs, entry.dest, data)
    if with_boot_files:
        _check_same(fs, f"{MBR_BOOT_DIR}/{bootloader.KERNEL_NAME}", image.kernel)
        _check_same(fs, f"{MBR_BOOT_DIR}/{bootloader.INITRD_NAME}", image.initrd)
    _check_same(fs, RELEASE_PATH, image.release(slot).to_json())


def install_systemd_boot(esp: PartitionFiles) -> None:
    """systemd-boot as the removable-media loader, and loader.conf picking `engine-*`."""
    esp.makedirs(posixpath.dirname(ESP_BOOTLOADER))
    esp.write_atomic(ESP_BOOTLOADER, bootloader.systemd_boot_binary())
    esp.makedirs(posixpath.dirname(ESP_LOADER_CONF))
    esp.write_atomic(ESP_LOADER_CONF, bootloader.loader_conf())
    esp.makedirs(ESP_ENTRIES_DIR)


def systemd_boot_ok(esp: PartitionFiles) -> bool:
    try:
        return (
            esp.read(ESP_BOOTLOADER) == bootloader.systemd_boot_binary()
            and esp.read(ESP_LOADER_CONF) == bootloader.loader_conf()
        )
    except Exception:  # noqa: BLE001 - missing or unreadable: not ok
        return False


def write_esp_kernel(esp: PartitionFiles, image: SystemImage, slot: Slot) -> None:
    """The slot's kernel and initrd on the ESP, each via a temp name and a rename."""
    esp.makedirs(esp_slot_dir(slot))
    esp.write_atomic(bootloader.esp_kernel_path(slot), image.kernel)
    esp.write_atomic(bootloader.esp_initrd_path(slot), image.initrd)
    _check_same(esp, bootloader.esp_kernel_path(slot), image.kernel)
    _check_same(esp, bootloader.esp_initrd_path(slot), image.initrd)


def boot_entries(esp: PartitionFiles) -> list[BootEntryName]:
    if not esp.is_dir(ESP_ENTRIES_DIR):
        return []
    found = (BootEntryName.parse(name) for name in esp.list(ESP_ENTRIES_DIR))
    return [e for e in found if e is not None]


def retire_entries(esp: PartitionFiles, slot: Slot) -> None:
    """Remove every boot entry of `slot` (and leftovers of interrupted entry writes), so the
    slot can be rewritten while nothing can boot it."""
    if not esp.is_dir(ESP_ENTRIES_DIR):
        return
    for name in esp.list(ESP_ENTRIES_DIR):
        entry = BootEntryName.parse(name)
        leftover = name.endswith(".new") and name.startswith("engine-")
        if (entry is not None and entry.slot is slot) or leftover:
            esp.remove(f"{ESP_ENTRIES_DIR}/{name}")


def write_entry(esp: PartitionFiles, name: BootEntryName, version: str) -> None:
    esp.makedirs(ESP_ENTRIES_DIR)
    esp.write_atomic(name.path, bootloader.entry_text(version, name.slot))


def next_generation(esp: PartitionFiles, floor: int) -> int:
    return max([floor, *(e.generation for e in boot_entries(esp))]) + 1
