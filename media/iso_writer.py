"""Write an ISO image in one sequential pass, checksumming as it goes.

pycdlib lays out the ISO and writes its metadata (volume descriptors, path tables,
directories, boot catalog, the boot files it patches); payload file data is not copied by it.
`MetadataCapture` is the file object pycdlib writes into: it keeps the metadata in memory and
drops the placeholder data of payload files. `ImageStreamer` then writes the final image from
byte 0 to the end: metadata, payload files read from the host, zeros in the gaps, and the
hybrid system area. Along the way it computes the isomd5sum MD5 and fragment sums (one MD5
thread) and each payload file's SHA-256 (another thread), so the image is read and written
exactly once and the two hashes use both cores while the main thread does the I/O.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import os
import stat
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enginekit.errors import InternalError
from media.errors import InvalidPayload
from media.isomd5 import FRAGMENT_COUNT, FRAGMENT_SUM_SIZE, fragment_checkpoints

CHUNK = 4 * 1024 * 1024
_BUFFERS = 4
_ZEROS = bytes(CHUNK)
_ZERO_VIEW = memoryview(_ZEROS)

ProgressCallback = Callable[[int, int], None]


class ZeroSource(io.RawIOBase):
    """A stand-in for a payload file's data inside pycdlib: reads as zeros, costs nothing.
    The real bytes are streamed by `ImageStreamer`."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        left = max(0, self._size - self._pos)
        n = left if size is None or size < 0 else min(size, left)
        self._pos += n
        return _ZEROS[:n] if n <= CHUNK else bytes(n)


class MetadataCapture(io.RawIOBase):
    """A write-only file object that records pycdlib's writes outside the payload regions."""

    def __init__(self, skip_regions: Iterable[tuple[int, int]]) -> None:
        super().__init__()
        regions = sorted((s, e) for s, e in skip_regions if e > s)
        self._starts = [s for s, _ in regions]
        self._ends = [e for _, e in regions]
        self._pos = 0
        self._end = 0
        self.writes: list[tuple[int, bytes]] = []

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._end}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        start, end = self._pos, self._pos + len(view)
        # Keep the parts of [start, end) that are not inside a payload region.
        cursor = start
        i = bisect.bisect_right(self._starts, cursor) - 1
        i = max(i, 0)
        while cursor < end:
            while i < len(self._starts) and self._ends[i] <= cursor:
                i += 1
            if i < len(self._starts) and self._starts[i] <= cursor:
                cursor = min(end, self._ends[i])  # inside a region: skip it
                continue
            stop = min(end, self._starts[i]) if i < len(self._starts) else end
            self.writes.append((cursor, bytes(view[cursor - start : stop - start])))
            cursor = stop
        self._pos = end
        self._end = max(self._end, end)
        return len(view)


def coalesce(writes: list[tuple[int, bytes]]) -> list[tuple[int, bytearray]]:
    """Merge (offset, bytes) writes into sorted, disjoint clusters; later writes win."""
    spans = sorted((off, off + len(data)) for off, data in writes if data)
    clusters: list[tuple[int, int]] = []
    for start, end in spans:
        if clusters and start <= clusters[-1][1]:
            clusters[-1] = (clusters[-1][0], max(clusters[-1][1], end))
        else:
            clusters.append((start, end))
    buffers = [(start, bytearray(end - start)) for start, end in clusters]
    starts = [start for start, _ in clusters]
    for off, data in writes:
        if not data:
            continue
        start, buf = buffers[bisect.bisect_right(starts, off) - 1]
        buf[off - start : off - start + len(data)] = data
    return buffers


@dataclass(frozen=True)
class StreamedFile:
    """A payload file whose bytes go to `offset` of the image, read from `source`."""

    rel: str
    source: Path
    offset: int
    size: int


@dataclass(frozen=True)
class StreamResult:
    md5: str  # over [0, hashed_length), the application-use field read as spaces
    fragment_sums: str
    sha256: dict[str, str]  # payload path -> sha256 of what was written


class _Md5Pass:
    """The running isomd5sum MD5 with its fragment snapshots (one thread feeds it, in order)."""

    def __init__(self, hashed_length: int) -> None:
        self.digest = hashlib.md5()
        self.length = hashed_length
        self.position = 0
        self.checkpoints = fragment_checkpoints(hashed_length, FRAGMENT_COUNT)
        self.per_fragment = FRAGMENT_SUM_SIZE // FRAGMENT_COUNT
        self.sums: list[str] = []

    def update(self, offset: int, data: memoryview | bytes) -> None:
        if offset != self.position:
            raise InternalError(f"MD5 pass out of order at {offset} (expected {self.position})")
        view = memoryview(data)[: max(0, self.length - offset)]
        while len(view):
            if self.checkpoints:
                take = min(len(view), self.checkpoints[0][0] - self.position)
            else:
                take = len(view)
            self.digest.update(view[:take])
            self.position += take
            view = view[take:]
            if self.checkpoints and self.position == self.checkpoints[0][0]:
                self.checkpoints.pop(0)
                snap = self.digest.copy().digest()
                # As isomd5sum prints them: the leading hex digit of each of the first bytes.
                self.sums.append("".join(format(b, "x")[0] for b in snap[: self.per_fragment]))
        self.position = offset + len(data)


def _all_zeros(view: memoryview) -> bool:
    """Whether `view` holds only zero bytes (three probes first: data almost never passes)."""
    size = len(view)
    if not size or view[0] or view[size // 2] or view[size - 1]:
        return False
    return view.tobytes() == _ZEROS[:size]


class ImageStreamer:
    """Write the whole image sequentially to `fd` and hash it on the way.

    On a new, empty regular file, runs of zeros (padding, and zero-filled payload data such
    as the unused part of a VM image) are left as holes instead of written, as
    `cp --sparse=auto` does: the file reads the same, byte for byte, and the disk is spared
    the writes. Anywhere else (a device, a file with old contents) every byte is written.
    """

    def __init__(
        self,
        fd: int,
        total_bytes: int,
        hashed_length: int,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.fd = fd
        self.total = total_bytes
        self.position = 0
        self.progress = progress
        self._md5 = _Md5Pass(hashed_length)
        info = os.fstat(fd)
        self._sparse = stat.S_ISREG(info.st_mode) and info.st_size == 0
        self._md5_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iso-md5")
        self._sha_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iso-sha256")

    def _emit(self, data: memoryview | bytes, sha: Any = None) -> list[Future[None]]:
        view = memoryview(data)
        offset = self.position
        futures = [self._md5_pool.submit(self._md5.update, offset, view)]
        if sha is not None:
            futures.append(self._sha_pool.submit(sha.update, view))
        if self._sparse and _all_zeros(view):
            os.lseek(self.fd, len(view), os.SEEK_CUR)
        else:
            done = 0
            while done < len(view):
                done += os.write(self.fd, view[done:])
        self.position += len(view)
        if self.progress is not None:
            self.progress(self.position, self.total)
        return futures

    def _zeros(self, upto: int) -> None:
        while self.position < upto:
            self._emit(_ZERO_VIEW[: min(CHUNK, upto - self.position)])

    def _file(self, item: StreamedFile, slots: list[tuple[bytearray, list[Future[None]]]]) -> str:
        sha = hashlib.sha256()
        left = item.size
        turn = 0
        with open(item.source, "rb", buffering=0) as src:
            while left > 0:
                buf, pending = slots[turn % len(slots)]
                for future in pending:
                    future.result()  # the hashes are done with this buffer
                view = memoryview(buf)[: min(CHUNK, left)]
                got = src.readinto(view)
                if not got:
                    raise InvalidPayload(
                        f"{item.source}: shrank while the ISO was being written",
                        hint="do not change the payload during a build",
                    )
                slots[turn % len(slots)] = (buf, self._emit(view[:got], sha))
                left -= got
                turn += 1
        for _, pending in slots:
            for future in pending:
                future.result()
        return sha.hexdigest()

    def stream(
        self, clusters: list[tuple[int, bytearray]], files: list[StreamedFile]
    ) -> StreamResult:
        pieces: list[tuple[int, int, Any]] = [(off, 0, buf) for off, buf in clusters]
        pieces += [(f.offset, 1, f) for f in files]
        pieces.sort(key=lambda p: (p[0], p[1]))
        slots: list[tuple[bytearray, list[Future[None]]]] = [
            (bytearray(CHUNK), []) for _ in range(_BUFFERS)
        ]
        sha256: dict[str, str] = {}
        try:
            for offset, kind, item in pieces:
                if offset < self.position:
                    raise InternalError(f"overlapping pieces in the image at byte {offset}")
                self._zeros(offset)
                if kind == 0:
                    view = memoryview(item)
                    for start in range(0, len(view), CHUNK):
                        self._emit(view[start : start + CHUNK])
                else:
                    sha256[item.rel] = self._file(item, slots)
            self._zeros(self.total)
            if self.position != self.total:
                raise InternalError(f"image is {self.position} bytes, expected {self.total}")
            if self._sparse:
                os.ftruncate(self.fd, self.total)  # a hole at the end still counts
        finally:
            self._md5_pool.shutdown(wait=True)
            self._sha_pool.shutdown(wait=True)
        return StreamResult(
            md5=self._md5.digest.hexdigest(),
            fragment_sums="".join(self._md5.sums),
            sha256=sha256,
        )
