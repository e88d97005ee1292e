"""Files over 4 GiB on a medium: ISO 9660 stores them as several directory records
(multi-extent). A medium built with one must verify, and the reader must return every byte:
the same bytes that lie where xorriso (the reference reader) says the file's extents are.
Reading those extents rather than extracting the file keeps the disk this test needs at one
ISO (4.2 GB) instead of two."""

from __future__ import annotations

import hashlib
from pathlib import Path

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


def _sha256(stream_path: Path) -> str:
    digest = hashlib.sha256()
    with stream_path.open("rb") as stream:
        while chunk := stream.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


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


def _sha256_of_extents(iso: Path, extents: list[tuple[int, int]]) -> str:
    digest = hashlib.sha256()
    with iso.open("rb") as image:
        for start, length in extents:
            image.seek(start)
            while length:
                chunk = image.read(min(4 * 1024 * 1024, length))
                assert chunk, "the ISO ends inside an extent"
                digest.update(chunk)
                length -= len(chunk)
    return digest.hexdigest()


@pytest.mark.slow
def test_a_file_over_4_gib_builds_verifies_and_reads_back(tmp_path: Path) -> None:
    payload = tmp_path / "payload"
    _sparse_file(payload / BIG)
    write_small_payload(payload)
    source_sha = _sha256(payload / BIG)
    iso = tmp_path / "big.iso"
    try:
        build_iso(payload, iso)
        (payload / BIG).unlink()  # keep at most two 4 GB files on disk at once
        assert engine_media(["verify", str(iso)]) == 0
        digest = hashlib.sha256()
        with MediumReader.open(iso) as reader:
            assert reader.size(BIG) == BIG_SIZE
            assert not reader.verify_files()

            class Sink:
                def write(self, chunk: bytes) -> None:
                    digest.update(chunk)

            reader.copy_to(BIG, Sink())  # type: ignore[arg-type]
        assert digest.hexdigest() == source_sha
        extents = _xorriso_extents(iso, "/" + BIG)
        assert len(extents) == 2, extents  # the file really is multi-extent
        assert sum(length for _, length in extents) == BIG_SIZE
        assert _sha256_of_extents(iso, extents) == source_sha
    finally:
        iso.unlink(missing_ok=True)
