"""A block device as a copier target: the device-specific checks and steps around a write.

`BlockDeviceTarget` opens the device exclusively (O_EXCL: the kernel refuses while anything is
mounted from it or another program holds it), asks the kernel for its size and read-only flag
(BLKGETSIZE64, BLKROGET) before writing anything, zeroes the first and last MiB so no stale
partition table survives (a backup GPT left at the end of a bigger stick confuses firmware),
and after writing flushes the device's buffers (BLKFLSBUF) and asks the kernel to re-read the
new partition table (BLKRRPART).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import struct
from pathlib import Path

from enginekit.sizes import human_sizes
from media.errors import DeviceError, TargetRefused
from media.usb.copier import STALE_TABLE_BYTES, FileTarget
from media.usb.discovery import device_identity

log = logging.getLogger(__name__)

# From <linux/fs.h>.
BLKROGET = 0x125E
BLKRRPART = 0x125F
BLKFLSBUF = 0x1261
BLKSSZGET = 0x1268
BLKGETSIZE64 = 0x80081272


def _ioctl_int(fd: int, request: int, fmt: str) -> int:
    buffer = bytearray(struct.calcsize(fmt))
    fcntl.ioctl(fd, request, buffer)
    value: int = struct.unpack(fmt, buffer)[0]
    return value


def device_size(fd: int) -> int:
    return _ioctl_int(fd, BLKGETSIZE64, "Q")


def device_read_only(fd: int) -> bool:
    return _ioctl_int(fd, BLKROGET, "i") != 0


def is_block_device(path: Path) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


class BlockDeviceTarget(FileTarget):
    """A whole-disk block device (a USB stick, an SD card, a loop device).

    `identity` is what `discovery.device_identity` said when the device was checked and
    shown; the write refuses when the opened device is another medium by then.
    """

    def __init__(self, path: Path, identity: str | None = None) -> None:
        super().__init__(path)
        self.identity = identity

    def open_write(self) -> int:
        try:
            fd, self.direct_io = self.open_raw(os.O_WRONLY | os.O_EXCL)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise TargetRefused(
                    f"refusing {self.path}: in use (mounted, or opened exclusively by "
                    "another program)",
                    hint="unmount its partitions (or add --unmount) and close programs using it",
                ) from exc
            if exc.errno == errno.EROFS:
                raise TargetRefused(
                    f"refusing {self.path}: is read-only",
                    hint="check the stick's write-protect switch",
                ) from exc
            raise self._open_error(exc) from exc
        return fd

    def size(self, fd: int) -> int:
        return device_size(fd)

    def check(self, fd: int, image_size: int) -> None:
        # Asked of the kernel on the open descriptor: the policy's view may be stale.
        if self.identity is not None:
            rdev = os.fstat(fd).st_rdev
            now = device_identity(f"{os.major(rdev)}:{os.minor(rdev)}")
            if now != self.identity:
                raise TargetRefused(
                    f"refusing {self.path}: is no longer the disk that was checked "
                    f"({self.identity}, now {now}); was the stick replaced?",
                    hint="run the command again so the new disk is checked and confirmed",
                )
        if device_read_only(fd):
            raise TargetRefused(
                f"refusing {self.path}: is read-only", hint="check the write-protect switch"
            )
        size = device_size(fd)
        if size == 0:
            raise TargetRefused(f"refusing {self.path}: has no medium")
        if size < image_size:
            raise TargetRefused(
                f"refusing {self.path}: is smaller than the image ({{}} < {{}})".format(
                    *human_sizes(size, image_size)
                ),
                hint="use a bigger stick",
            )

    def prepare(self, fd: int, image_size: int) -> None:  # noqa: ARG002 - the shared signature
        size = device_size(fd)
        head = min(STALE_TABLE_BYTES, size)
        self.zero_range(fd, 0, head)
        if size > head:
            tail = min(STALE_TABLE_BYTES, size - head)
            self.zero_range(fd, size - tail, tail)
        os.fsync(fd)

    def finish(self, fd: int) -> None:
        os.fsync(fd)
        for request, name in ((BLKFLSBUF, "BLKFLSBUF"), (BLKRRPART, "BLKRRPART")):
            try:
                fcntl.ioctl(fd, request, 0)
            except OSError as exc:
                # A loop device without partition scanning answers EINVAL to BLKRRPART; the
                # data is written either way, so this is worth a debug line, not a failure.
                log.debug("%s on %s: %s", name, self.path, exc.strerror)


def open_target(path: Path, identity: str | None = None) -> FileTarget:
    """The right target class for a path: a block device or a regular file. `identity`
    (block devices only) is the medium that was checked, see `BlockDeviceTarget`."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as exc:
        raise TargetRefused(
            f"refusing {path}: no such device or file",
            hint="a missing path is never created; check the name",
        ) from exc
    if stat.S_ISBLK(mode):
        return BlockDeviceTarget(path, identity)
    if stat.S_ISREG(mode):
        return FileTarget(path)
    raise DeviceError(f"{path} is neither a block device nor a regular file")
