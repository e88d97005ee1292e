"""Advisory locks that keep two EngineKit processes (or QEMU) from changing one disk image.

A writer (`open_installation(writable=True)`, `engine-disk boot`, `engine-disk create`) holds
an exclusive open-file-description lock (`F_OFD_SETLK`) on one byte far beyond any image's
end for its whole run; a reader holds a shared one. OFD locks die with the last descriptor,
so a SIGKILLed holder leaves nothing behind. The byte is far from QEMU's own `-drive` locks
(bytes 100-299 of the image, see QEMU's raw-posix `RAW_LOCK_*_BASE`), so the QEMU we start
while holding our lock does not trip over it, and `held_by_qemu` can still test for a QEMU
that some other program started on the image.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from disk_images.errors import InvalidDiskImage
from enginekit.file_users import ENGINEKIT_LOCK_OFFSET, QEMU_LOCK_LEN, QEMU_LOCK_START

# One byte at 2**62: beyond any real image, and far from QEMU's lock bytes 100-299
# (enginekit.file_users reads both from /proc/locks for the shared output checks).
LOCK_OFFSET = ENGINEKIT_LOCK_OFFSET
_FLOCK = "hhqqi4x"  # struct flock on Linux x86-64/aarch64: type, whence, start, len, pid

IN_USE_HINT = "wait until the other engine-disk boot / engine-install run ends, then try again"


def in_use_message(path: Path) -> str:
    return f"{path}: is in use by another EngineKit process (boot/install)"


class DiskInUse(InvalidDiskImage):
    """Another process holds the image: an EngineKit writer or reader, or QEMU."""


@dataclass
class _Held:
    fd: int
    exclusive: bool
    count: int


# Locks this process holds, by (st_dev, st_ino): a nested open of the same image in the same
# process (boot's own final open_installation) shares the lock instead of conflicting with it.
_HELD: dict[tuple[int, int], _Held] = {}
_HELD_GUARD = threading.Lock()


def _flock(kind: int, start: int, length: int) -> bytes:
    return struct.pack(_FLOCK, kind, os.SEEK_SET, start, length, 0)


def _lock_failed(path: Path, exc: OSError) -> InvalidDiskImage:
    """A lock call that failed for a reason other than a holder (ENOLCK, EINVAL, ENOSYS...):
    typically a filesystem without POSIX open-file-description locks (some network ones)."""
    return InvalidDiskImage(
        f"{path}: cannot lock the disk image ({exc.strerror or exc})",
        hint="keep disk images on a local filesystem that supports POSIX locks "
        "(ext4, xfs, btrfs, tmpfs), not on a network or FUSE mount",
    )


def _try_lock(path: Path, fd: int, exclusive: bool) -> bool:
    kind = fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock(kind, LOCK_OFFSET, 1))
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise _lock_failed(path, exc) from None
    return True


def _conflicting_lock(fd: int, exclusive: bool, start: int, length: int) -> bool:
    """Whether another open file description holds a lock that conflicts in the range."""
    kind = fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK
    answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _flock(kind, start, length))
    kind_found: int = struct.unpack(_FLOCK, answer)[0]
    return kind_found != fcntl.F_UNLCK


def held_by_qemu(path: Path) -> bool:
    """Whether a QEMU has the image open as a drive (it locks bytes 100-299)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return _conflicting_lock(fd, True, QEMU_LOCK_START, QEMU_LOCK_LEN)
    except OSError as exc:
        raise _lock_failed(path, exc) from None
    finally:
        os.close(fd)


def held_by_enginekit(path: Path) -> bool:
    """Whether another process holds our lock on `path` (any kind: a reader counts too)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) in _HELD:
            return False  # our own
        return _conflicting_lock(fd, True, LOCK_OFFSET, 1)
    except OSError as exc:
        raise _lock_failed(path, exc) from None
    finally:
        os.close(fd)


@contextmanager
def disk_lock(path: Path, *, exclusive: bool = True) -> Iterator[None]:
    """Hold the image's lock for the body; raise DiskInUse at once if another process has it.

    An exclusive lock also refuses an image that a QEMU has open. Nested calls in one process
    share the first lock (a shared lock inside an exclusive one; not the other way round).
    """
    path = Path(path)
    try:
        fd = os.open(path, (os.O_RDWR if exclusive else os.O_RDONLY) | os.O_CLOEXEC)
    except OSError as exc:
        how = "for writing" if exclusive else "for reading"
        raise InvalidDiskImage(
            f"{path}: cannot open it {how} ({exc.strerror})",
            hint="check the file's permissions (and that its filesystem is not read-only)",
        ) from None
    key_stat = os.fstat(fd)
    key = (key_stat.st_dev, key_stat.st_ino)
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is not None and (held.exclusive or not exclusive):
            held.count += 1
            os.close(fd)
            fd = -1
    if fd == -1:
        try:
            yield
        finally:
            with _HELD_GUARD:
                held = _HELD[key]
                held.count -= 1
                if held.count == 0:
                    os.close(held.fd)
                    del _HELD[key]
        return
    try:
        if held is not None:
            # Only a shared lock can be held here (an exclusive one was shared above): an
            # upgrade to exclusive inside a reader of the same process is a programming
            # error, not another process.
            raise DiskInUse(
                f"{path}: is in use read-only by this same process (a shared lock); the "
                "exclusive lock cannot be taken inside it",
                hint="take the exclusive lock first, then open the image read-only inside it",
            )
        if not _try_lock(path, fd, exclusive):
            raise DiskInUse(in_use_message(path), hint=IN_USE_HINT)
        try:
            qemu = exclusive and _conflicting_lock(fd, True, QEMU_LOCK_START, QEMU_LOCK_LEN)
        except OSError as exc:
            raise _lock_failed(path, exc) from None
        if qemu:
            raise DiskInUse(
                f"{path}: is in use by a QEMU virtual machine",
                hint="shut the virtual machine down first",
            )
    except BaseException:
        os.close(fd)
        raise
    with _HELD_GUARD:
        _HELD[key] = _Held(fd, exclusive, 1)
    try:
        yield
    finally:
        with _HELD_GUARD:
            held = _HELD[key]
            held.count -= 1
            if held.count == 0:
                os.close(held.fd)
                del _HELD[key]
