"""Is a target the medium, or does it hold it? The one answer for `usb write` and the installer.

Paths are compared by what they name, never by spelling: the same device and inode after
following links (so a symbolic link or a hard link to the medium is the medium), a loop device
whose backing file is the medium, and a block device that holds the filesystem the medium
lives on (the partition itself, or the whole disk under it, through device-mapper and md).
Reads sysfs and /proc only; needs no root.
"""

from __future__ import annotations

import enum
import os
import stat
from pathlib import Path

from enginekit.file_users import file_id

SYS_BLOCK = Path("/sys/block")
SYS_DEV_BLOCK = Path("/sys/dev/block")
MOUNTINFO = Path("/proc/self/mountinfo")


class MediumRelation(enum.StrEnum):
    """How a target relates to the medium; the values complete "TARGET ..."."""

    SAME_FILE = "is the medium itself"
    LOOP_OVER_MEDIUM = "is a loop device over the medium"
    BEHIND_MEDIUM_LOOP = "is the file behind the medium's loop device"
    HOLDS_MEDIUM = "is the disk that holds the medium"


def majmin(dev: int) -> str:
    return f"{os.major(dev)}:{os.minor(dev)}"


def whole_disks_of(device: str, _depth: int = 0) -> set[str]:
    """The whole-disk major:minor numbers a device sits on: the disk of a partition, the
    disks under a device-mapper or md device (recursively), or the device itself."""
    sys_path = SYS_DEV_BLOCK / device
    if not sys_path.exists() or _depth > 8:
        return set()
    real = sys_path.resolve()
    slaves = real / "slaves"
    if slaves.is_dir() and any(slaves.iterdir()):
        found: set[str] = set()
        for slave in slaves.iterdir():
            try:
                found |= whole_disks_of((slave / "dev").read_text().strip(), _depth + 1)
            except OSError:
                continue
        return found
    if (real / "partition").exists():
        try:
            return whole_disks_of((real.parent / "dev").read_text().strip(), _depth + 1)
        except OSError:
            return set()
    return {device}


def _mount_sources(fs_dev: str) -> set[str]:
    """Block devices named as the source of mounts with device number `fs_dev` (btrfs and
    friends report an anonymous number; the mount's source names the real device)."""
    found: set[str] = set()
    try:
        text = MOUNTINFO.read_text()
    except OSError:
        return found
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 3 or len(tail) < 2 or fields[2] != fs_dev:
            continue
        try:
            st = os.stat(tail[1])
        except OSError:
            continue
        if stat.S_ISBLK(st.st_mode):
            found.add(majmin(st.st_rdev))
    return found


def devices_holding(path: str | os.PathLike[str]) -> set[str]:
    """major:minor of every block device the file `path` lives on: its filesystem's
    device (partition, dm, md), its mount source, and every whole disk under them."""
    try:
        st = os.stat(path)
    except OSError:
        return set()
    fs_dev = majmin(st.st_dev)
    direct = {fs_dev, *_mount_sources(fs_dev)}
    found = set(direct)
    for device in direct:
        found |= whole_disks_of(device)
    return {d for d in found if (SYS_DEV_BLOCK / d).exists()}


def loop_backing_id(device: str) -> tuple[int, int] | None:
    """Identity of the file behind the loop device major:minor `device`, if it is one."""
    try:
        name = (SYS_DEV_BLOCK / device).resolve().name
        backing = (SYS_BLOCK / name / "loop" / "backing_file").read_text(errors="replace")
    except OSError:
        return None
    return file_id(backing.strip()) if backing.strip() else None


def loop_devices_over(path: str | os.PathLike[str]) -> dict[str, str]:
    """`/dev/loopN` -> major:minor for each attached loop device backed by the file `path`."""
    wanted = file_id(path)
    found: dict[str, str] = {}
    if wanted is None:
        return found
    for loop_dir in sorted(SYS_BLOCK.glob("loop*")):
        try:
            device = (loop_dir / "dev").read_text().strip()
        except OSError:
            continue
        if loop_backing_id(device) == wanted:
            found[f"/dev/{loop_dir.name}"] = device
    return found


def medium_relation(
    target: str | os.PathLike[str], medium: str | os.PathLike[str]
) -> MediumRelation | None:
    """How writing `target` would touch `medium`, or None when it would not."""
    try:
        t = os.stat(target)
        m = os.stat(medium)
    except OSError:
        return None
    if (t.st_dev, t.st_ino) == (m.st_dev, m.st_ino):
        return MediumRelation.SAME_FILE
    medium_id = (m.st_dev, m.st_ino)
    if stat.S_ISBLK(t.st_mode):
        target_dev = majmin(t.st_rdev)
        if stat.S_ISBLK(m.st_mode):
            # A partition or mapping of the target disk is the medium.
            if target_dev in whole_disks_of(majmin(m.st_rdev)):
                return MediumRelation.HOLDS_MEDIUM
            return None
        if loop_backing_id(target_dev) == medium_id:
            return MediumRelation.LOOP_OVER_MEDIUM
        if target_dev in devices_holding(medium):
            return MediumRelation.HOLDS_MEDIUM
        return None
    if stat.S_ISBLK(m.st_mode) and loop_backing_id(majmin(m.st_rdev)) == (t.st_dev, t.st_ino):
        return MediumRelation.BEHIND_MEDIUM_LOOP
    return None
