"""Which disks to offer and which writes to refuse, as pure functions over descriptions.

Nothing here touches the machine: `hidden_reasons` decides what `usb list` shows by default,
`device_refusals` and `file_refusals` decide what `usb write` refuses, each refusal one clear
line with a hint. Keeping the rules pure lets them be tested table-driven on recorded udev
property sets of hardware we cannot attach (NVMe, SATA, SD readers).
"""

from __future__ import annotations

import enum
import stat
from dataclasses import dataclass

from enginekit.sizes import human_size, human_sizes
from media.usb.discovery import BlockDeviceInfo, Bus, Holds

# Etcher's "large drive" rule: above this a disk is rarely a USB stick, so ask twice.
LARGE_DISK_BYTES = 64 * 1000**3


class RefusalCode(enum.StrEnum):
    NOT_FOUND = "not-found"
    NOT_A_DEVICE_OR_FILE = "not-a-device-or-file"
    PARTITION = "partition"
    HOLDS_SYSTEM = "holds-system"
    HOLDS_IMAGE = "holds-image"
    IS_IMAGE = "is-image"
    BACKED_BY_IMAGE = "backed-by-image"
    IN_USE = "in-use"
    HOLDS_DISK = "holds-disk"
    LARGE = "large"
    MOUNTED = "mounted"
    READ_ONLY = "read-only"
    NO_MEDIUM = "no-medium"
    TOO_SMALL = "too-small"
    NOT_REMOVABLE = "not-removable"


@dataclass(frozen=True)
class Refusal:
    code: RefusalCode
    target: str
    reason: str  # completes "refusing <target>: ..."
    hint: str

    def line(self) -> str:
        return f"refusing {self.target}: {self.reason}"


@dataclass(frozen=True)
class WriteOptions:
    force: bool = False  # allow non-removable disks
    unmount: bool = False  # mounted partitions will be unmounted before writing
    # Disks above 64 GB: False when nobody will be asked to type the disk's name (--yes
    # without --allow-large), which makes them a refusal instead of a second question.
    large_ok: bool = True


class TargetKind(enum.StrEnum):
    BLOCK_DEVICE = "block device"
    REGULAR_FILE = "regular file"


def target_kind(path: str, mode: int | None) -> TargetKind | Refusal:
    """What a target path is, from its stat mode (None when it does not exist).

    A missing path is refused rather than created: a mistyped /dev/sdX would otherwise
    silently become a regular file in /dev while the stick stays untouched.
    """
    if mode is None:
        return Refusal(
            RefusalCode.NOT_FOUND,
            path,
            "no such device or file (a mistyped /dev/sdX must not create a file)",
            "check the name with 'engine-media usb list'; to write a stick image to a new "
            "file, create it first (e.g. truncate -s 8G stick.img)",
        )
    if stat.S_ISBLK(mode):
        return TargetKind.BLOCK_DEVICE
    if stat.S_ISREG(mode):
        return TargetKind.REGULAR_FILE
    return Refusal(
        RefusalCode.NOT_A_DEVICE_OR_FILE,
        path,
        "neither a block device nor a regular file",
        "give a whole-disk device such as /dev/sdb, or an existing regular file",
    )


def _system_holds(device: BlockDeviceInfo) -> list[str]:
    return [str(h) for h in (Holds.ROOT, Holds.BOOT, Holds.SWAP) if h in device.holds]


def hidden_reasons(device: BlockDeviceInfo, image_size: int | None = None) -> tuple[str, ...]:
    """Why `usb list` hides a disk by default; empty when it is shown.

    Shown are removable or USB-attached whole disks that do not hold the running system or
    the image, have a medium, are writable, and (given an image) are big enough.
    """
    reasons: list[str] = []
    held = _system_holds(device)
    if held:
        reasons.append(f"system disk: holds the running system ({', '.join(held)})")
    if Holds.IMAGE in device.holds:
        reasons.append("holds the image file")
    if Holds.IMAGE_BACKED in device.holds:
        reasons.append("a loop device over the image file")
    if device.is_partition:
        reasons.append("a partition, not a whole disk")
    if device.bus.is_virtual:
        reasons.append(f"virtual device ({device.bus})")
    elif not (device.removable or device.bus is Bus.USB):
        reasons.append(f"not removable (internal {device.bus} disk)")
    if device.size_bytes == 0:
        reasons.append("no medium")
    elif image_size is not None and device.size_bytes < image_size:
        reasons.append(f"too small ({human_size(device.size_bytes)} < image)")
    if device.read_only:
        reasons.append("read-only")
    return tuple(reasons)


IN_USE_HINT = (
    "stop what uses it (shut the VM down; unmount and detach the loop device with "
    "losetup -d) and run again"
)


def device_refusals(
    device: BlockDeviceInfo,
    image_size: int,
    options: WriteOptions,
    backing_users: tuple[str, ...] = (),
) -> tuple[Refusal, ...]:
    """Every reason not to write an image of `image_size` bytes to this block device.
    `backing_users` are the users of the file behind a loop device (`by a QEMU virtual
    machine (process 42)`, see `enginekit.file_users`): a refusal even with --force."""
    target = device.path
    found: list[Refusal] = []

    def refuse(code: RefusalCode, reason: str, hint: str) -> None:
        found.append(Refusal(code, target, reason, hint))

    if backing_users:
        refuse(
            RefusalCode.IN_USE,
            f"is a loop device over a file in use {', '.join(backing_users)}",
            IN_USE_HINT,
        )

    if device.is_partition:
        refuse(
            RefusalCode.PARTITION,
            "is a partition; the image must go to the whole disk",
            "give the disk itself (e.g. /dev/sdb, not /dev/sdb1)",
        )
    held = _system_holds(device)
    if held:
        refuse(
            RefusalCode.HOLDS_SYSTEM,
            f"holds the running system ({', '.join(held)})",
            "this is the computer's own disk; pick a USB stick from 'engine-media usb list'",
        )
    if Holds.IMAGE in device.holds:
        refuse(
            RefusalCode.HOLDS_IMAGE,
            "holds the image file being written",
            "copy the ISO to another disk first",
        )
    if Holds.IMAGE_BACKED in device.holds:
        refuse(
            RefusalCode.BACKED_BY_IMAGE,
            "is a loop device over the image file itself; writing would destroy the image",
            "give a USB stick, or a loop device over another file",
        )
    if device.mounted_partitions and not held and not options.unmount:
        mounts = ", ".join(f"{m.device} on {m.mountpoint}" for m in device.mounted_partitions)
        refuse(
            RefusalCode.MOUNTED,
            f"has mounted partitions ({mounts})",
            "close files on the stick and add --unmount to unmount them first",
        )
    if device.read_only:
        refuse(
            RefusalCode.READ_ONLY,
            "is read-only",
            "check the stick's write-protect switch (SD cards have one on the side)",
        )
    if device.size_bytes == 0:
        refuse(RefusalCode.NO_MEDIUM, "has no medium", "insert the card or stick")
    elif device.size_bytes < image_size:
        refuse(
            RefusalCode.TOO_SMALL,
            "is smaller than the image ({} < {})".format(
                *human_sizes(device.size_bytes, image_size)
            ),
            "use a bigger stick",
        )
    if needs_large_disk_confirmation(device) and not options.large_ok:
        refuse(
            RefusalCode.LARGE,
            f"is larger than 64 GB ({device.size_bytes / 1000**3:.1f} GB): rarely a USB stick",
            "check it is the right disk; with --yes, add --allow-large to write it anyway",
        )
    # What `usb list` hides as internal or virtual needs --force, loop devices included:
    # writing one overwrites the file behind it, which may be anyone's disk image.
    if not (device.removable or device.bus is Bus.USB) and not options.force:
        if device.bus is Bus.LOOP:
            refuse(
                RefusalCode.NOT_REMOVABLE,
                f"is a loop device ({device.describe()}), not a USB stick",
                "add --force if you really mean to overwrite the file behind it",
            )
        else:
            refuse(
                RefusalCode.NOT_REMOVABLE,
                f"is not removable (an internal {device.bus} disk)",
                "add --force if you really mean to erase this internal disk",
            )
    return tuple(found)


@dataclass(frozen=True)
class FileTargetInfo:
    """A regular file used as a target (a stick image to flash elsewhere)."""

    path: str
    size_bytes: int
    writable: bool
    is_the_image: bool  # same inode as the image
    free_bytes: int  # free space on its filesystem (informational: a file is never grown)
    # Each completes "is in use ...": `(attached to /dev/loop3)`, `by a QEMU virtual machine
    # (process 42)` (enginekit.file_users.users_of).
    users: tuple[str, ...] = ()
    # Completes "holds ...", for partitions that are not an installer medium's (a disk image).
    holds: str | None = None


def file_refusals(
    info: FileTargetInfo, image_size: int, *, force: bool = False
) -> tuple[Refusal, ...]:
    """The checks that make sense for a regular file: not the image, not in use (always),
    writable, at least the image's size (the file stands for a stick; it is never grown),
    and, unless `force`, not a disk image holding partitions other than an installer's."""
    found: list[Refusal] = []
    if info.is_the_image:
        found.append(
            Refusal(
                RefusalCode.IS_IMAGE,
                info.path,
                "is the image file itself",
                "give a USB stick or another file as the target",
            )
        )
    if info.users:
        found.append(
            Refusal(
                RefusalCode.IN_USE, info.path, f"is in use {', '.join(info.users)}", IN_USE_HINT
            )
        )
    if info.holds is not None and not force and not info.is_the_image:
        found.append(
            Refusal(
                RefusalCode.HOLDS_DISK,
                info.path,
                f"holds {info.holds}; it is a disk image, not a blank stick image",
                "check it is the right file; add --force to overwrite the disk it holds",
            )
        )
    if not info.writable:
        found.append(
            Refusal(
                RefusalCode.READ_ONLY,
                info.path,
                "is not writable",
                "check the file's permissions and whether its filesystem is mounted read-only",
            )
        )
    # A file stands for a stick: its current size is the stick's size, so a file smaller
    # than the image is refused like a small stick rather than silently grown.
    if info.size_bytes < image_size and not info.is_the_image:
        found.append(
            Refusal(
                RefusalCode.TOO_SMALL,
                info.path,
                "is smaller than the image ({} < {}); a file target stands for a stick "
                "of its size".format(*human_sizes(info.size_bytes, image_size)),
                f"create it at the stick's size first (e.g. truncate -s 8G {info.path})",
            )
        )
    return tuple(found)


def needs_large_disk_confirmation(device: BlockDeviceInfo) -> bool:
    """Disks above 64 GB are rarely USB sticks: ask again, naming the disk."""
    return device.size_bytes > LARGE_DISK_BYTES
