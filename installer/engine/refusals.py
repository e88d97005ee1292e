"""The runs the engine refuses, each with one clear line and the disk left unchanged.

Every check here runs before the first byte is written: a target that is not writable or too
small, a medium that fails verification, 4.0.0 straight to 5.0.0, a downgrade, an upgrade the
medium does not list. The screens check the same rules first (`installer.rules`); the engine
checks again because it is the only code that writes, and must never trust its caller.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from enginekit.errors import UserInputError
from enginekit.identity import medium_relation
from enginekit.sizes import human_size
from enginekit.versions import EngineVersion

MINIMUM_DISK_BYTES = 512 * 1024 * 1024


class Refused(UserInputError):
    """The engine will not carry out this plan; nothing was written."""


def refuse_block_device(target: Path) -> Refused:
    """The one line for a block device target: the installer writes image files only (the
    probe reads image files only, so nothing could be checked on a device before writing)."""
    return Refused(
        f"{target}: is a block device; engine-install installs into disk image files only",
        hint="install into an image (engine-disk create DISK.img --size 8G), then copy it "
        "to the disk",
    )


def refuse_medium_as_target(target: Path, medium: Path) -> None:
    """Refuse a target that is, or holds, the installer medium: installing would erase the
    medium (the shared identity check `enginekit.identity`, as `usb write` uses it)."""
    relation = medium_relation(target, medium)
    if relation is not None:
        raise Refused(
            f"{target}: {relation} ({medium}); installing would erase the installer medium; "
            "nothing was written",
            hint="give the disk image to install on as --target and the ISO as --media",
        )


def target_size(target: Path, *, device: bool = False) -> int:
    """Size of the target disk image file in bytes, or a refusal. A block device is the
    target only when the plan says so (`device`: the live installer's own disks)."""
    try:
        st = target.stat()
    except FileNotFoundError:
        raise Refused(
            f"{target}: no such disk image",
            hint="create one first, e.g. engine-disk create DISK.img --size 8G",
        ) from None
    if stat.S_ISBLK(st.st_mode):
        if not device:
            raise refuse_block_device(target)
        return device_size(target)
    if not stat.S_ISREG(st.st_mode):
        raise Refused(
            f"{target}: not a disk image file",
            hint="give the path of a disk image file, e.g. one made with 'engine-disk create'",
        )
    return st.st_size


def device_size(target: Path) -> int:
    """A block device's size in bytes (its st_size is 0): where a seek to the end lands."""
    try:
        fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise Refused(
            f"{target}: cannot read the disk ({exc.strerror})",
            hint="check that the disk is attached and readable",
        ) from None
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def check_target(target: Path, *, device: bool = False) -> int:
    """Refuse a target we cannot write or that is too small; return its size."""
    size = target_size(target, device=device)
    if not os.access(target, os.W_OK):
        raise Refused(
            f"{target}: the target is not writable",
            hint="check its permissions (or that it is not immutable: lsattr)",
        )
    try:
        fd = os.open(target, os.O_RDWR)
    except OSError as exc:
        raise Refused(
            f"{target}: the target is not writable ({exc.strerror})",
            hint="check its permissions (or that it is not immutable: lsattr)",
        ) from None
    os.close(fd)
    if size < MINIMUM_DISK_BYTES:
        raise Refused(
            f"{target}: the target is too small ({human_size(size)}); "
            f"Engine needs at least {human_size(MINIMUM_DISK_BYTES)}",
            hint="use a larger disk (engine-disk create DISK.img --size 8G)",
        )
    return size


def check_upgrade(installed: str, medium_version: str, upgrade_from: tuple[str, ...]) -> None:
    """Refuse an upgrade the rules forbid (same version is repair, not checked here)."""
    have = EngineVersion.parse(installed)
    new = EngineVersion.parse(medium_version)
    if new < have:
        raise Refused(
            f"the medium holds Engine {new}, older than the installed Engine {have}: "
            "a downgrade is refused",
            hint=f"use an Engine {have} or newer medium, or erase and reinstall",
        )
    if new == have:
        return
    if installed in upgrade_from:
        return
    if have == EngineVersion(4, 0, 0) and new >= EngineVersion(5, 0, 0):
        raise Refused(
            f"Engine {have} cannot be upgraded to {new} directly: go through 4.5.0 first",
            hint="upgrade with the Engine 4.5.0 medium, then with this one",
        )
    allowed = ", ".join(upgrade_from) or "none"
    raise Refused(
        f"Engine {new} cannot upgrade the installed Engine {have} (it upgrades only: {allowed})",
        hint="upgrade step by step through the versions the media list",
    )
