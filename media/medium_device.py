"""Find the block device a live installer booted from: the one holding the Engine ISO volume.

A DVD drive (`sr0`) and a USB stick written by `engine-media usb write` (`sdb`) both hold the
ISO 9660 image from their first byte, so the Primary Volume Descriptor sits at byte 32768 of
the raw device. The medium is the device whose volume id is the one the builder gives this
version (`media.iso_builder.volume_id_for`); what the live system checks is that raw device,
the bytes the firmware booted, not the copy the kernel unpacked into RAM.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from media.errors import InvalidISO

SYS_BLOCK = Path("/sys/block")
DEV = Path("/dev")
PVD_OFFSET = 16 * 2048
_VOLUME_ID = slice(40, 72)


@dataclass(frozen=True)
class MediumDevice:
    path: Path
    volume_id: str


def volume_id_of(device: Path) -> str | None:
    """The ISO 9660 volume id on `device`, or None when it holds no ISO 9660 volume (or no
    medium: an empty DVD drive cannot be opened)."""
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        sector = os.pread(fd, 2048, PVD_OFFSET)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(sector) < 2048 or sector[0] != 1 or sector[1:6] != b"CD001":
        return None
    return sector[_VOLUME_ID].decode("ascii", "replace").rstrip(" ")


def find_medium(volume_id: str, sys_block: Path = SYS_BLOCK, dev: Path = DEV) -> MediumDevice:
    """The hardware block device holding the volume `volume_id`; InvalidISO naming what was
    looked at when there is none."""
    looked: list[str] = []
    for entry in sorted(sys_block.iterdir()) if sys_block.is_dir() else ():
        if not (entry / "device").exists():
            continue  # loop, ram, zram: not a medium the machine booted from
        device = dev / entry.name
        found = volume_id_of(device)
        looked.append(f"{device.name}={found or '-'}")
        if found == volume_id:
            return MediumDevice(device, found)
    seen = ", ".join(looked) or "no block devices"
    raise InvalidISO(
        f"no block device holds the installer medium {volume_id} (looked at: {seen})",
        hint="boot from the DVD or stick itself, not from a copy of its kernel",
    )


__all__ = ["MediumDevice", "find_medium", "volume_id_of"]
