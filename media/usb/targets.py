"""What `usb write` is asked to write to: the image checked, each target examined, and two
names of one target (a symbolic or hard link, `./x` and `x`, `/dev/loop0` and its
`/dev/disk/by-*` name) recognised as one.

`examine_target` looks at the machine (stat, udev, sysfs, statvfs) and hands the description
to the pure rules of `media.usb.policy`; the verdict is an `AcceptedTarget` or the refusals.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from enginekit.errors import UserInputError
from enginekit.file_users import locks_on, users_of
from enginekit.identity import medium_relation
from media.errors import InvalidISO, TargetRefused
from media.usb import discovery, policy
from media.usb.disk_contents import read_disk_contents

SYS_DEV_BLOCK = Path("/sys/dev/block")
ISO_MAGIC_OFFSET = 32769  # "CD001" of the primary volume descriptor (sector 16, byte 1)


@dataclass(frozen=True)
class AcceptedTarget:
    """A target that passed every check, with what was checked."""

    path: Path
    device: discovery.BlockDeviceInfo | None  # None for a regular file
    size: int
    identity: str | None = None  # the medium that was checked (block devices only)
    holds: str | None = None  # partitions it holds that are not an installer medium's


Verdict = AcceptedTarget | tuple[policy.Refusal, ...]


def check_image(path: Path) -> int:
    """Size of the ISO, or a clear error: it must be a non-empty ISO 9660 regular file."""
    try:
        st = path.stat()
    except OSError as exc:
        raise UserInputError(f"{path}: {exc.strerror}", hint="give the path of the ISO") from exc
    if not stat.S_ISREG(st.st_mode):
        raise UserInputError(
            f"{path} is not a regular file",
            hint="the ISO comes first, then the targets: usb write ENGINE.iso /dev/sdX",
        )
    try:
        with open(path, "rb") as image:
            image.seek(ISO_MAGIC_OFFSET)
            magic = image.read(5)
    except OSError as exc:
        raise UserInputError(f"{path}: {exc.strerror}", hint="check the ISO's permissions") from exc
    if magic != b"CD001":
        raise InvalidISO(
            f"{path} is not an ISO 9660 image (no CD001 at offset {ISO_MAGIC_OFFSET})",
            hint="the ISO comes first, then the targets: usb write ENGINE.iso /dev/sdX",
        )
    return st.st_size


def target_key(path: Path) -> tuple[str, int, int]:
    """What a target is, whatever it is called: the device number of a block device, the
    inode of a file (so links and relative names meet), the absolute path of what is not
    there (so two spellings of one missing name still meet)."""
    try:
        st = os.stat(path)
    except OSError:
        return ("path:" + os.path.normpath(os.path.abspath(path)), 0, 0)
    if stat.S_ISBLK(st.st_mode):
        return ("block", os.major(st.st_rdev), os.minor(st.st_rdev))
    return ("inode", st.st_dev, st.st_ino)


def distinct_targets(paths: Iterable[Path]) -> list[tuple[Path, tuple[Path, ...]]]:
    """Each target once, by the first name it was given, with its other names; in order."""
    names: dict[tuple[str, int, int], list[Path]] = {}
    for path in paths:
        names.setdefault(target_key(path), []).append(path)
    return [(first, tuple(others)) for first, *others in names.values()]


def examine_target(
    path: Path, image: Path, image_size: int, options: policy.WriteOptions
) -> Verdict:
    """Look at `path` and judge it as a target for `image`."""
    try:
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise TargetRefused(f"refusing {path}: {exc.strerror}") from exc
    kind = policy.target_kind(str(path), st.st_mode if st else None)
    if isinstance(kind, policy.Refusal):
        return (kind,)
    assert st is not None
    if kind is policy.TargetKind.BLOCK_DEVICE:
        # Read before the description, so a stick swapped in meanwhile cannot pass as checked.
        identity = discovery.device_identity(f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
        device = discovery.describe_block_device(path, image)
        refusals = policy.device_refusals(
            device,
            image_size,
            options,
            backing_file_users(os.major(st.st_rdev), os.minor(st.st_rdev)),
        )
        if refusals:
            return refusals
        # A stick holding someone's partitions is normal: named in the listing, not refused.
        contents = None if device.size_bytes == 0 else read_disk_contents(path)
        holds = contents.summary if contents and not contents.is_installer_medium else None
        return AcceptedTarget(path, device, device.size_bytes, identity, holds)
    fs = os.statvfs(path)
    contents = read_disk_contents(path)
    info = policy.FileTargetInfo(
        path=str(path),
        size_bytes=st.st_size,
        writable=os.access(path, os.W_OK),
        is_the_image=medium_relation(path, image) is not None,
        free_bytes=fs.f_bavail * fs.f_frsize,
        users=users_of(path),
        holds=contents.summary if contents and not contents.is_installer_medium else None,
    )
    refusals = policy.file_refusals(info, image_size, force=options.force)
    return refusals or AcceptedTarget(path, None, st.st_size, holds=info.holds)


def backing_file_users(major: int, minor: int) -> tuple[str, ...]:
    """Who holds a lock on the file behind loop device `major:minor` (QEMU, EngineKit's disk
    lock, flock); empty for other devices. The loop device itself is not counted."""
    try:
        backing = (SYS_DEV_BLOCK / f"{major}:{minor}" / "loop" / "backing_file").read_text()
    except OSError:
        return ()
    backing = backing.strip()
    if not backing or backing.endswith(" (deleted)"):
        return ()
    phrases: list[str] = []
    for lock in locks_on(backing):
        phrase = lock.describe()
        if phrase not in phrases:
            phrases.append(phrase)
    return tuple(phrases)


__all__ = [
    "AcceptedTarget",
    "Verdict",
    "check_image",
    "distinct_targets",
    "examine_target",
    "target_key",
]
