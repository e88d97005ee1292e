"""Copy an image to a target file and read it back, with honest progress and a clean stop.

`ImageCopier` writes to any file (a regular file here, a block device through the
`BlockDeviceTarget` subclass of `FileTarget`), so most of its behaviour is testable without
root. Writes go through page-aligned 4 MiB buffers with O_DIRECT when the target allows it
(otherwise with an fdatasync every 32 MiB), so the progress reported is what is really on the
device and a stop request takes effect within one chunk. A background thread reads ahead so
reading and writing overlap. Verification reads the target back bypassing the page cache
(O_DIRECT, else fadvise DONTNEED) next to the image and compares them chunk by chunk with
libc's memcmp: byte for byte, which is stronger than comparing digests and costs a fraction of
the CPU of hashing (the write phase does no hashing at all, so it keeps pace with dd on a busy
machine). A mismatch names the offset of the first bad 512-byte block.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import errno
import fcntl
import logging
import mmap
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from enginekit.errors import Interrupted
from enginekit.sizes import human_size
from media.errors import DeviceError, TargetRefused

log = logging.getLogger(__name__)

MiB = 1024 * 1024
CHUNK_SIZE = 4 * MiB
# O_DIRECT needs buffer, offset and length aligned to the logical block size; 4096 covers
# every disk and filesystem we meet (512e and 4Kn disks, ext4).
ALIGN = 4096
BLOCK = 512  # the unit in which a bad block is reported
SYNC_INTERVAL = 32 * MiB  # without O_DIRECT: flush this often so progress stays honest
STALE_TABLE_BYTES = MiB  # MBR + primary GPT at the start, backup GPT at the end


class Phase(enum.StrEnum):
    PREPARE = "prepare"
    WRITE = "write"
    VERIFY = "verify"


@dataclass(frozen=True)
class Progress:
    phase: Phase
    done: int
    total: int


ProgressCallback = Callable[[Progress], None]


class WriteInterrupted(Interrupted):
    """A write (or its verification) was stopped; says what state the target was left in."""

    def __init__(self, target: str, phase: Phase, done: int, total: int) -> None:
        if phase is Phase.VERIFY:
            message = f"stopped: {target} was written completely but not verified"
            hint = f"run 'engine-media usb verify' on {target} before using it"
        else:
            message = (
                f"stopped: {target} is incomplete ({human_size(done)} of {human_size(total)} "
                "written); it will not boot"
            )
            hint = f"write {target} again before using it"
        super().__init__(message, hint=hint)
        self.target = target
        self.phase = phase
        self.done = done
        self.total = total


@dataclass(frozen=True)
class WriteResult:
    bytes_written: int
    seconds: float
    direct_io: bool


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    bytes_checked: int
    seconds: float
    first_bad_offset: int | None = None  # start of the first 512-byte block that differs
    detail: str = ""


# ---- targets --------------------------------------------------------------------------------


def _aligned_buffer(size: int) -> mmap.mmap:
    """Anonymous mmap memory is page aligned, which is what O_DIRECT wants."""
    return mmap.mmap(-1, size)


def _address(buffer: mmap.mmap) -> int:
    """Where an mmap buffer lives; valid while the buffer stays open (it is never resized)."""
    anchor = ctypes.c_char.from_buffer(buffer)
    address = ctypes.addressof(anchor)
    del anchor  # release the export so the buffer can be closed later
    return address


_libc = ctypes.CDLL(None)
_memcmp = _libc.memcmp
_memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_memcmp.restype = ctypes.c_int


def _same_bytes(first: int, second: int, length: int) -> bool:
    """memcmp of two buffers (ctypes drops the GIL for the call): ~10 GB/s where Python's
    own buffer comparisons manage a few hundred MB/s."""
    return length == 0 or _memcmp(first, second, length) == 0


def _round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while len(data):
        written = os.pwrite(fd, data, offset)
        if written <= 0:
            raise OSError(errno.EIO, "short write")
        data = data[written:]
        offset += written


def _set_direct(fd: int, on: bool) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    flags = flags | os.O_DIRECT if on else flags & ~os.O_DIRECT
    fcntl.fcntl(fd, fcntl.F_SETFL, flags)


class FileTarget:
    """A destination the copier writes to: here a regular file that already exists.

    Subclasses add device-specific checks and steps (see `media.usb.blockdev`). A missing
    path is never created: a mistyped device name must not turn into a file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.direct_io = False

    def __str__(self) -> str:
        return str(self.path)

    def open_raw(self, flags: int) -> tuple[int, bool]:
        """Open with O_DIRECT when the filesystem supports it (tmpfs before Linux 6.6 does not),
        else without.
        Returns (fd, whether O_DIRECT is on); OSError propagates for the caller to explain."""
        try:
            return os.open(self.path, flags | os.O_DIRECT | os.O_CLOEXEC), True
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
        return os.open(self.path, flags | os.O_CLOEXEC), False

    def _open_error(self, exc: OSError) -> Exception:
        if exc.errno == errno.ENOENT:
            return TargetRefused(
                f"refusing {self.path}: no such device or file",
                hint="create the file first; a missing path is never created",
            )
        if exc.errno in (errno.EACCES, errno.EPERM):
            return TargetRefused(
                f"refusing {self.path}: {exc.strerror}",
                hint="writing a disk needs root: run the command with sudo",
            )
        if exc.errno == errno.EROFS:
            return TargetRefused(f"refusing {self.path}: is read-only")
        return DeviceError(f"cannot open {self.path}: {exc.strerror}")

    def open_write(self) -> int:
        try:
            fd, self.direct_io = self.open_raw(os.O_WRONLY)
        except OSError as exc:
            raise self._open_error(exc) from exc
        return fd

    def open_read(self) -> tuple[int, bool]:
        try:
            return self.open_raw(os.O_RDONLY)
        except OSError as exc:
            raise self._open_error(exc) from exc

    def check(self, fd: int, image_size: int) -> None:
        """Refuse before the first byte is written (regular files may grow: nothing to do)."""

    def size(self, fd: int) -> int:
        return os.fstat(fd).st_size

    def prepare(self, fd: int, image_size: int) -> None:
        """Clear a stale backup GPT at the end of a file bigger than the image."""
        size = self.size(fd)
        if size > image_size + STALE_TABLE_BYTES:
            self.zero_range(fd, size - STALE_TABLE_BYTES, STALE_TABLE_BYTES)

    def zero_range(self, fd: int, offset: int, length: int) -> None:
        zeros = _aligned_buffer(_round_up(length, ALIGN))
        try:
            direct = self.direct_io and offset % ALIGN == 0 and length % ALIGN == 0
            if self.direct_io and not direct:
                _set_direct(fd, False)
            _pwrite_all(fd, memoryview(zeros)[:length], offset)
            if self.direct_io and not direct:
                _set_direct(fd, True)
        finally:
            zeros.close()

    def finish(self, fd: int) -> None:
        """Make everything durable before verification starts."""
        os.fsync(fd)


# ---- read-ahead ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Chunk:
    offset: int
    data: memoryview  # valid until the next chunk is requested
    address: int  # of data[0], for memcmp


class _ReadAhead:
    """Reads [0, total) of a file in a background thread into a few aligned buffers.

    The reader may run `depth - 1` chunks ahead; preadv releases the GIL, so reading
    overlaps writing or comparing in the consumer.
    A short read (end of file or device) ends the stream early: the last chunk is shorter.
    """

    _END = object()

    def __init__(
        self,
        fd: int,
        total: int,
        *,
        chunk_size: int,
        direct: bool,
        depth: int = 3,
    ) -> None:
        self.fd = fd
        self.total = total
        self.chunk_size = chunk_size
        self.direct = direct
        self._buffers = [_aligned_buffer(chunk_size) for _ in range(depth)]
        self._addresses = [_address(buffer) for buffer in self._buffers]
        self._free: queue.Queue[int] = queue.Queue()
        for i in range(depth):
            self._free.put(i)
        self._filled: queue.Queue[object] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="usb-read-ahead", daemon=True)

    def _read_into(self, buffer: mmap.mmap, offset: int, want: int) -> int:
        got = 0
        # O_DIRECT lengths must be block multiples; reading past the end just returns less.
        ask = _round_up(want, ALIGN) if self.direct else want
        view = memoryview(buffer)
        while got < want:
            n = os.preadv(self.fd, [view[got:ask]], offset + got)
            got += n
            # A short O_DIRECT read is the end of the file or device; asking again from an
            # unaligned offset would fail with EINVAL.
            if n == 0 or (self.direct and got < ask):
                break
        return min(got, want)

    def _run(self) -> None:
        offset = 0
        try:
            while offset < self.total and not self._stop.is_set():
                try:
                    slot = self._free.get(timeout=0.1)
                except queue.Empty:
                    continue
                buffer = self._buffers[slot]
                want = min(self.chunk_size, self.total - offset)
                got = self._read_into(buffer, offset, want)
                view = memoryview(buffer)[:got]
                self._filled.put((slot, _Chunk(offset, view, self._addresses[slot])))
                if got < want:
                    break
                offset += got
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            self._filled.put(exc)
            return
        self._filled.put(self._END)

    def __enter__(self) -> _ReadAhead:
        self._thread.start()
        return self

    def __iter__(self) -> Iterator[_Chunk]:
        previous: int | None = None
        while True:
            if previous is not None:
                self._free.put(previous)
                previous = None
            item = self._filled.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, tuple)
            slot, chunk = item
            previous = slot
            yield chunk

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        # Unblock a reader waiting for a free buffer, then wait for it to finish its preadv.
        for i in range(len(self._buffers)):
            self._free.put(i)
        self._thread.join()
        for buffer in self._buffers:
            _close_buffer(buffer)


def _read_chunks(fd: int, total: int, buffer: mmap.mmap) -> Iterator[_Chunk]:
    """Read [0, total) of a file into one buffer, a chunk at a time, in this thread.

    The write phase reads like dd: read a chunk, write it, repeat. Measured here, reading
    ahead in a thread while writing gained nothing (source and stick compete for the same
    disk or CPU) and cost a thread handoff per chunk.
    """
    view = memoryview(buffer)
    address = _address(buffer)
    offset = 0
    while offset < total:
        want = min(len(buffer), total - offset)
        got = 0
        while got < want:
            n = os.preadv(fd, [view[got:want]], offset + got)
            if n == 0:
                break
            got += n
        yield _Chunk(offset, view[:got], address)
        if got < want:
            return
        offset += got


def _close_buffer(buffer: mmap.mmap) -> None:
    # A chunk's view may still be referenced; the mapping then goes with the last view.
    with contextlib.suppress(BufferError):
        buffer.close()


# ---- the copier -----------------------------------------------------------------------------


def first_difference(expected: memoryview, actual: memoryview) -> int:
    """Offset (within the chunk) of the first 512-byte block where the two differ."""
    length = min(len(expected), len(actual))
    step = 64 * 1024
    for start in range(0, length, step):
        end = min(start + step, length)
        if expected[start:end] != actual[start:end]:
            for block in range(start, end, BLOCK):
                stop = min(block + BLOCK, end)
                if expected[block:stop] != actual[block:stop]:
                    return block
    return length // BLOCK * BLOCK


class ImageCopier:
    """Write `image` to `target`, then read it back and compare.

    `on_progress` is called from the copying thread after each chunk is on the device;
    setting `stop` ends the copy within one chunk with `WriteInterrupted`. `max_rate`
    (bytes per second) throttles writing: a seam for tests of interruption.
    """

    def __init__(
        self,
        image: Path,
        target: FileTarget,
        *,
        chunk_size: int = CHUNK_SIZE,
        on_progress: ProgressCallback | None = None,
        stop: threading.Event | None = None,
        max_rate: float | None = None,
    ) -> None:
        if chunk_size % ALIGN:
            raise ValueError(f"chunk size {chunk_size} is not a multiple of {ALIGN}")
        self.image = image
        self.target = target
        self.chunk_size = chunk_size
        self.on_progress = on_progress
        self.stop = stop or threading.Event()
        self.max_rate = max_rate
        self.image_size = os.stat(image).st_size

    def _report(self, phase: Phase, done: int) -> None:
        if self.on_progress is not None:
            self.on_progress(Progress(phase, done, self.image_size))

    def _throttle(self, started: float, done: int) -> None:
        if self.max_rate:
            delay = started + done / self.max_rate - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)

    def write(self) -> WriteResult:
        """Write the whole image; the target's own checks run first."""
        started = time.monotonic()
        done = 0
        with contextlib.ExitStack() as stack:
            image_fd = os.open(self.image, os.O_RDONLY | os.O_CLOEXEC)
            stack.callback(os.close, image_fd)
            fd = self.target.open_write()
            stack.callback(os.close, fd)
            self.target.check(fd, self.image_size)
            self._report(Phase.PREPARE, 0)
            try:
                self.target.prepare(fd, self.image_size)
            except OSError as exc:
                raise DeviceError(
                    f"{self.target}: clearing old partition tables failed: {exc.strerror}"
                ) from exc
            direct = self.target.direct_io
            buffer = _aligned_buffer(self.chunk_size)
            stack.callback(_close_buffer, buffer)
            unsynced = 0
            for chunk in _read_chunks(image_fd, self.image_size, buffer):
                if self.stop.is_set():
                    # Flush what is there and let the kernel forget the old partitions, so
                    # nothing mounts a half-overwritten filesystem from the stick.
                    with contextlib.suppress(OSError):
                        self.target.finish(fd)
                    raise WriteInterrupted(str(self.target), Phase.WRITE, done, self.image_size)
                try:
                    self._write_chunk(fd, chunk, direct)
                    unsynced += len(chunk.data)
                    last = chunk.offset + len(chunk.data) >= self.image_size
                    if not direct and (unsynced >= SYNC_INTERVAL or last):
                        os.fdatasync(fd)
                        # Written pages are clean now; dropping them keeps the page cache for
                        # others and makes the later read-back really come from the device.
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                        unsynced = 0
                except OSError as exc:
                    raise DeviceError(
                        f"{self.target}: write failed at offset {chunk.offset}: {exc.strerror}",
                        hint="the stick may be faulty or was removed; try another one",
                    ) from exc
                done = chunk.offset + len(chunk.data)
                if direct or unsynced == 0:
                    self._report(Phase.WRITE, done)
                self._throttle(started, done)
            if done != self.image_size:
                raise DeviceError(f"{self.image} shrank while being written")
            try:
                self.target.finish(fd)
            except OSError as exc:
                raise DeviceError(f"{self.target}: flushing failed: {exc.strerror}") from exc
            self._report(Phase.WRITE, done)
        return WriteResult(done, time.monotonic() - started, direct)

    def _write_chunk(self, fd: int, chunk: _Chunk, direct: bool) -> None:
        length = len(chunk.data)
        aligned = length // ALIGN * ALIGN if direct else length
        if aligned:
            _pwrite_all(fd, chunk.data[:aligned], chunk.offset)
        if aligned < length:
            # Only the image's last chunk can end off alignment: finish it through the cache.
            _set_direct(fd, False)
            try:
                _pwrite_all(fd, chunk.data[aligned:], chunk.offset + aligned)
                os.fdatasync(fd)
            finally:
                _set_direct(fd, True)

    def verify(self) -> VerifyResult:
        """Read the target back (not from the page cache) and compare it with the image.

        The image is read alongside through the page cache: right after a write it is
        usually still there, and it is the target that must come from the device.
        """
        started = time.monotonic()
        with contextlib.ExitStack() as stack:
            fd, direct = self.target.open_read()
            stack.callback(os.close, fd)
            if not direct:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            image_fd = os.open(self.image, os.O_RDONLY | os.O_CLOEXEC)
            stack.callback(os.close, image_fd)
            readers = [
                stack.enter_context(
                    _ReadAhead(source, self.image_size, chunk_size=self.chunk_size, direct=d)
                )
                for source, d in ((image_fd, False), (fd, direct))
            ]
            checked = 0
            for expected, actual in zip(*readers, strict=False):
                if self.stop.is_set():
                    raise WriteInterrupted(str(self.target), Phase.VERIFY, checked, self.image_size)
                length = min(self.chunk_size, self.image_size - expected.offset)
                if len(expected.data) != length:
                    raise DeviceError(f"{self.image} shrank while being verified")
                if len(actual.data) != length or not _same_bytes(
                    expected.address, actual.address, length
                ):
                    bad = expected.offset + first_difference(expected.data, actual.data)
                    return VerifyResult(
                        False,
                        checked,
                        time.monotonic() - started,
                        first_bad_offset=bad,
                        detail=self._mismatch_text(bad, expected, actual),
                    )
                checked = actual.offset + length
                self._report(Phase.VERIFY, checked)
            if checked < self.image_size:
                return VerifyResult(
                    False,
                    checked,
                    time.monotonic() - started,
                    first_bad_offset=checked,
                    detail=f"{self.target} ends at offset {checked}, before the image does",
                )
        return VerifyResult(True, checked, time.monotonic() - started)

    def _mismatch_text(self, bad: int, expected: _Chunk, actual: _Chunk) -> str:
        have = len(actual.data)
        if have < len(expected.data) and _same_bytes(expected.address, actual.address, have):
            # Everything the target has matches; it just stops early.
            return f"{self.target} ends at offset {actual.offset + have}, before the image does"
        return (
            f"{self.target} differs from the image at offset {bad} "
            f"({human_size(bad)}): first bad block"
        )
