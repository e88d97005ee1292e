"""Loop devices as a context manager: attach an image, find its partitions, detach on exit.

Design (what happens if we are SIGKILLed, when no Python code runs): the device is attached
in one `LOOP_CONFIGURE` ioctl with `LO_FLAGS_AUTOCLEAR | LO_FLAGS_PARTSCAN`, and we keep the
loop device open for as long as the context lives. Autoclear makes the kernel detach the
device on its *last close*; our own descriptor closes when the process dies, and the mounts
that also hold it live in a private mount namespace (`disk_images.mount`) that the kernel tears
down with the process. So after a SIGKILL nothing is left attached, and there is no window
between "attached" and "autoclear set" as there would be with `losetup` followed by a flag
change. On a normal exit we close our descriptor and wait for the kernel to finish the detach.

The kernel here is built without partition-table parsers, so `--partscan` finds nothing; the
partitions are then registered from userspace with `partx --add` (util-linux parses the table
and adds them with BLKPG). With autoclear + partscan the kernel drops them on detach.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import time
from pathlib import Path
from types import TracebackType

from disk_images.errors import LoopDeviceError
from enginekit.process import require_tool, run

log = logging.getLogger(__name__)

LOOP_CONTROL = Path("/dev/loop-control")
LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LOOP_CLR_FD = 0x4C01
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
LO_FLAGS_PARTSCAN = 8
LO_NAME_SIZE = 64

DETACH_TIMEOUT = 10.0
NODE_TIMEOUT = 5.0


class _LoopInfo64(ctypes.Structure):
    _fields_ = [
        ("lo_device", ctypes.c_uint64),
        ("lo_inode", ctypes.c_uint64),
        ("lo_rdevice", ctypes.c_uint64),
        ("lo_offset", ctypes.c_uint64),
        ("lo_sizelimit", ctypes.c_uint64),
        ("lo_number", ctypes.c_uint32),
        ("lo_encrypt_type", ctypes.c_uint32),
        ("lo_encrypt_key_size", ctypes.c_uint32),
        ("lo_flags", ctypes.c_uint32),
        ("lo_file_name", ctypes.c_char * LO_NAME_SIZE),
        ("lo_crypt_name", ctypes.c_char * LO_NAME_SIZE),
        ("lo_encrypt_key", ctypes.c_ubyte * 32),
        ("lo_init", ctypes.c_uint64 * 2),
    ]


class _LoopConfig(ctypes.Structure):
    _fields_ = [
        ("fd", ctypes.c_uint32),
        ("block_size", ctypes.c_uint32),
        ("info", _LoopInfo64),
        ("reserved", ctypes.c_uint64 * 8),
    ]


def _sys_block(name: str) -> Path:
    return Path("/sys/block") / name


def backing_file(device: Path) -> str | None:
    """The file a loop device is attached to, or None if it is free."""
    try:
        return (_sys_block(device.name) / "loop" / "backing_file").read_text().strip()
    except OSError:
        return None


def loops_backed_by(image: Path) -> tuple[Path, ...]:
    """The loop devices attached to `image` right now (read from sysfs, no root needed)."""
    ours = str(Path(image).resolve())
    found = []
    for block in sorted(Path("/sys/block").glob("loop*")):
        current = backing_file(Path("/dev") / block.name)
        if current is not None and current.removesuffix(" (deleted)") == ours:
            found.append(Path("/dev") / block.name)
    return tuple(found)


class LoopDevice:
    """`with LoopDevice(image) as loop:` attaches `image` (autoclear, partition scan).

    `loop.device` is /dev/loopN; `loop.partition(n)` is /dev/loopNpn (waited for, and
    registered with partx if the kernel could not parse the table itself).
    """

    def __init__(
        self, image: Path, *, read_only: bool = False, offset: int = 0, size_limit: int = 0
    ) -> None:
        self.image = Path(image)
        self.read_only = read_only
        self.offset = offset
        self.size_limit = size_limit
        self._device: Path | None = None
        self._loop_fd: int | None = None
        self._partx_done = False

    @property
    def device(self) -> Path:
        if self._device is None:
            raise LoopDeviceError(f"{self.image}: not attached")
        return self._device

    def __enter__(self) -> LoopDevice:
        try:
            self.attach()
        except BaseException:
            self.detach()  # a Ctrl-C inside attach: __exit__ will not run
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.detach()

    def attach(self) -> Path:
        # A disk is attached the same way as an image file (the live installer writes the
        # computer's disk through the session code the host uses for images).
        if not (self.image.is_file() or self.image.is_block_device()):
            raise LoopDeviceError(f"{self.image}: not a regular file or a disk; cannot attach it")
        mode = os.O_RDONLY if self.read_only else os.O_RDWR
        backing_fd = os.open(self.image, mode | os.O_CLOEXEC)
        try:
            self._configure(backing_fd)
        finally:
            os.close(backing_fd)
        log.debug("attached %s to %s", self.image, self._device)
        return self.device

    def _configure(self, backing_fd: int) -> None:
        config = _LoopConfig()
        config.fd = backing_fd
        config.info.lo_offset = self.offset
        config.info.lo_sizelimit = self.size_limit
        flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_PARTSCAN
        if self.read_only:
            flags |= LO_FLAGS_READ_ONLY
        config.info.lo_flags = flags
        config.info.lo_file_name = os.fsencode(str(self.image))[: LO_NAME_SIZE - 1]
        try:
            control = os.open(LOOP_CONTROL, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise LoopDeviceError(
                f"cannot open {LOOP_CONTROL}: {exc.strerror}",
                hint="loop devices need root (or CAP_SYS_ADMIN) and the loop module",
            ) from None
        try:
            for _attempt in range(20):
                number = fcntl.ioctl(control, LOOP_CTL_GET_FREE)
                device = Path(f"/dev/loop{number}")
                mode = os.O_RDONLY if self.read_only else os.O_RDWR
                try:
                    loop_fd = os.open(device, mode | os.O_CLOEXEC)
                except FileNotFoundError:
                    time.sleep(0.02)  # devtmpfs has not created the node yet
                    continue
                # Owned from here on, so that even a Ctrl-C right after the ioctl reaches
                # detach() through __exit__ of whoever holds us (or the process exit).
                self._device = device
                self._loop_fd = loop_fd
                try:
                    fcntl.ioctl(loop_fd, LOOP_CONFIGURE, bytes(config))
                except OSError as exc:
                    self._device = self._loop_fd = None
                    os.close(loop_fd)
                    if exc.errno == errno.EBUSY:
                        continue  # another process took this device between GET_FREE and us
                    raise LoopDeviceError(
                        f"cannot attach {self.image} to {device}: {exc.strerror}"
                    ) from None
                return
        finally:
            os.close(control)
        raise LoopDeviceError(f"cannot find a free loop device for {self.image}")

    def partition(self, number: int) -> Path:
        """/dev/loopNpK for partition `number`, once the node exists."""
        name = f"{self.device.name}p{number}"
        sys_node = _sys_block(self.device.name) / name
        node = Path("/dev") / name
        if not sys_node.exists() and not self._partx_done:
            partx = require_tool("partx", "util-linux")
            run([partx, "--add", str(self.device)], check=False)
            self._partx_done = True
        deadline = time.monotonic() + NODE_TIMEOUT
        while time.monotonic() < deadline:
            if sys_node.exists() and node.exists():
                return node
            time.sleep(0.01)
        raise LoopDeviceError(
            f"{self.image}: partition {number} did not appear as {node}",
            hint="the partition table may not have that partition",
        )

    def detach(self) -> None:
        """Close our hold; autoclear detaches once the last user (a mount) is gone."""
        if self._loop_fd is None or self._device is None:
            return
        device = self._device
        loop_fd, self._loop_fd = self._loop_fd, None
        try:
            # Asks the kernel to detach on last close (idempotent with autoclear).
            fcntl.ioctl(loop_fd, LOOP_CLR_FD)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                log.debug("LOOP_CLR_FD on %s: %s", device, exc.strerror)
        finally:
            os.close(loop_fd)
        ours = str(self.image.resolve())
        deadline = time.monotonic() + DETACH_TIMEOUT
        while time.monotonic() < deadline:
            current = backing_file(device)
            if current is None or current.removesuffix(" (deleted)") != ours:
                self._device = None
                log.debug("detached %s", device)
                return
            time.sleep(0.01)
        holders = sorted(p.name for p in (_sys_block(device.name) / "holders").glob("*"))
        raise LoopDeviceError(
            f"{device} ({self.image}) is still attached after {DETACH_TIMEOUT:.0f} s",
            hint=f"something still uses it (holders: {holders or 'none'}); it detaches "
            "automatically when that is unmounted or closed",
        )
