"""Files over 4 GiB on a medium: ISO 9660 stores them as several directory records
(multi-extent). A medium built with one must verify, and the reader must return every byte:
the same bytes that lie where xorriso (the reference reader) says the file's extents are.
Reading those extents rather than extracting the file keeps the disk this test needs at one
ISO (4.2 GB) instead of two."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import pytest

from commands.engine_media import main as engine_media
from enginekit.process import require_tool, run
from media.iso_builder import build_iso
from media.reader import MediumReader

from .conftest import write_small_payload

BIG = "system/root/big.img"
# 4.2 GiB: more than one directory record holds (4 GiB - 2 KiB), so it takes two extents.
BIG_SIZE = 4 * 1024**3 + 200 * 1024**2
# Non-zero marks before, across and after the 4 GiB boundary where the second extent starts,
# so a reader that stops after the first extent (or misplaces the second) returns other bytes.
MARKS = {0: b"head", 0xFFFFF800 - 3: b"across", BIG_SIZE - 4: b"tail"}


def _sparse_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.truncate(BIG_SIZE)
        for offset, mark in MARKS.items():
            out.seek(offset)
            out.write(mark)


def _expected(offset: int, length: int) -> bytes:
    """The source file's bytes at [offset, offset + length): zeros and the marks."""
    chunk = bytearray(length)
    for at, mark in MARKS.items():
        lo, hi = max(at, offset), min(at + len(mark), offset + length)
        if lo < hi:
            chunk[lo - offset : hi - offset] = mark[lo - at : hi - at]
    return bytes(chunk)


class _ExtentsReader:
    """The ISO's bytes at the file's extents (as xorriso places them), read in file order."""

    def __init__(self, image: BinaryIO, extents: list[tuple[int, int]]) -> None:
        self._image = image
        self._extents = list(extents)

    def read(self, length: int) -> bytes:
        out = bytearray()
        while length and self._extents:
            start, left = self._extents[0]
            self._image.seek(start)
            part = self._image.read(min(length, left))
            assert part, "the ISO ends inside an extent"
            out += part
            length -= len(part)
            if len(part) == left:
                self._extents.pop(0)
            else:
                self._extents[0] = (start + len(part), left - len(part))
        return bytes(out)


class _ComparingSink:
    """Where the reader streams the file: each chunk is compared, as it comes, with the source
    and with the bytes at xorriso's extents (no hashing: memcmp, one pass over 4.2 GB)."""

    def __init__(self, extents: _ExtentsReader) -> None:
        self._extents = extents
        self.offset = 0
        self.mismatch: int | None = None

    def write(self, chunk: bytes) -> int:
        if self.mismatch is None and (
            chunk != _expected(self.offset, len(chunk)) or chunk != self._extents.read(len(chunk))
        ):
            self.mismatch = self.offset
        self.offset += len(chunk)
        return len(chunk)


def _xorriso_extents(iso: Path, path: str) -> list[tuple[int, int]]:
    """(byte offset, length) of each extent of `path`, in file order, as xorriso reports them."""
    xorriso = require_tool("xorriso", "xorriso")
    done = run([xorriso, "-indev", iso, "-find", path, "-exec", "report_lba"])
    rows = []
    for line in done.stdout.decode().splitlines():
        if line.startswith("File data lba:"):
            number, start, blocks, _size, _name = line.split(":", 1)[1].split(",", 4)
            rows.append((int(number), int(start) * 2048, int(blocks) * 2048))
    rows.sort()
    extents = [(start, length) for _, start, length in rows]
    # The last extent holds the rest of the file, not its whole last block.
    last_start, _ = extents[-1]
    extents[-1] = (last_start, BIG_SIZE - sum(length for _, length in extents[:-1]))
    return extents


@pytest.mark.slow
def test_a_file_over_4_gib_builds_verifies_and_reads_back(tmp_path: Path) -> None:
    payload = tmp_path / "payload"
    _sparse_file(payload / BIG)
    write_small_payload(payload)
    iso = tmp_path / "big.iso"
    try:
        build_iso(payload, iso)
        (payload / BIG).unlink()  # keep at most two 4 GB files on disk at once
        assert engine_media(["verify", str(iso)]) == 0  # the manifest's SHA-256 of each file
        extents = _xorriso_extents(iso, "/" + BIG)
        assert len(extents) == 2, extents  # the file really is multi-extent
        assert sum(length for _, length in extents) == BIG_SIZE
        with MediumReader.open(iso) as reader, iso.open("rb") as image:
            assert reader.size(BIG) == BIG_SIZE
            sink = _ComparingSink(_ExtentsReader(image, extents))
            assert reader.copy_to(BIG, sink) == BIG_SIZE
        assert sink.mismatch is None, f"the bytes read back differ at offset {sink.mismatch}"
        assert sink.offset == BIG_SIZE
    finally:
        iso.unlink(missing_ok=True)
