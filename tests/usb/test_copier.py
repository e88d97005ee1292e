"""The copier on regular files (no root): write, read-back verify, mismatch offsets, stop.

A regular file is a valid target (a stick image to flash elsewhere), and it exercises the same
code as a block device apart from the device checks, which tests/usb/test_blockdev.py covers.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from media.errors import TargetRefused
from media.usb.blockdev import open_target
from media.usb.copier import (
    CHUNK_SIZE,
    FileTarget,
    ImageCopier,
    Phase,
    Progress,
    WriteInterrupted,
    first_difference,
)
from media.usb.writer import TargetStatus, write_many

MiB = 1024 * 1024


def _image(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


class BufferedFileTarget(FileTarget):
    """A filesystem without O_DIRECT support (as tmpfs was before Linux 6.6)."""

    def open_raw(self, flags: int) -> tuple[int, bool]:
        return os.open(self.path, flags | os.O_CLOEXEC), False


@pytest.mark.parametrize("target_class", [FileTarget, BufferedFileTarget])
def test_write_and_verify_an_unaligned_image(tmp_path: Path, target_class: type) -> None:
    # 9 MiB + 1234 bytes: two full chunks, then a tail that O_DIRECT cannot write directly.
    image = _image(tmp_path / "engine.iso", 9 * MiB + 1234)
    target = tmp_path / "stick.img"
    target.touch()
    seen: list[Progress] = []
    copier = ImageCopier(image, target_class(target), on_progress=seen.append)
    written = copier.write()
    assert written.direct_io is (target_class is FileTarget)
    assert target.read_bytes() == image.read_bytes()
    assert copier.verify().ok
    for phase in (Phase.WRITE, Phase.VERIFY):
        done = [p.done for p in seen if p.phase is phase]
        assert done == sorted(done)
        assert done[-1] == image.stat().st_size


def test_a_bigger_target_keeps_its_size_and_loses_its_backup_table(tmp_path: Path) -> None:
    image = _image(tmp_path / "engine.iso", 3 * MiB)
    target = tmp_path / "stick.img"
    target.write_bytes(b"\xee" * (16 * MiB))  # stands for an old backup GPT at the end
    ImageCopier(image, FileTarget(target)).write()
    data = target.read_bytes()
    assert len(data) == 16 * MiB
    assert data[: 3 * MiB] == image.read_bytes()
    assert data[-MiB:] == bytes(MiB)


@pytest.mark.parametrize("bad", [0, 511, 512, 4 * MiB + 4095, 9 * MiB + 1000])
def test_verify_names_the_first_bad_block(tmp_path: Path, bad: int) -> None:
    image = _image(tmp_path / "engine.iso", 9 * MiB + 1234)
    target = tmp_path / "stick.img"
    target.touch()
    copier = ImageCopier(image, FileTarget(target))
    copier.write()
    with open(target, "r+b") as f:
        f.seek(bad)
        byte = f.read(1)
        f.seek(bad)
        f.write(bytes([byte[0] ^ 0xFF]))
        f.seek(bad + 3 * MiB)  # a later difference must not hide the first one
        f.write(b"\0\1\2")
    result = copier.verify()
    assert not result.ok
    assert result.first_bad_offset == bad // 512 * 512
    assert f"offset {bad // 512 * 512} " in result.detail


@pytest.mark.parametrize("length", [5 * MiB + 4096, 5 * MiB + 1000, 4 * MiB, 0])
def test_verify_reports_a_short_target(tmp_path: Path, length: int) -> None:
    image = _image(tmp_path / "engine.iso", 6 * MiB)
    target = tmp_path / "stick.img"
    target.write_bytes(image.read_bytes()[:length])
    result = ImageCopier(image, FileTarget(target)).verify()
    assert not result.ok
    assert result.first_bad_offset == length // 512 * 512
    assert "ends at offset" in result.detail


def test_stop_event_leaves_an_incomplete_target(tmp_path: Path) -> None:
    image = _image(tmp_path / "engine.iso", 6 * CHUNK_SIZE)
    target = tmp_path / "stick.img"
    target.touch()
    stop = threading.Event()

    def progress(p: Progress) -> None:
        if p.phase is Phase.WRITE and p.done >= 2 * CHUNK_SIZE:
            stop.set()

    copier = ImageCopier(image, FileTarget(target), on_progress=progress, stop=stop)
    with pytest.raises(WriteInterrupted) as info:
        copier.write()
    assert info.value.done == 2 * CHUNK_SIZE
    assert "incomplete" in info.value.message
    assert info.value.hint
    assert target.stat().st_size == 2 * CHUNK_SIZE
    stop.clear()
    result = copier.verify()
    assert not result.ok
    assert result.first_bad_offset == 2 * CHUNK_SIZE


def test_a_missing_target_is_refused_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "sdzz"
    with pytest.raises(TargetRefused, match="no such device or file"):
        open_target(missing)
    with pytest.raises(TargetRefused):
        FileTarget(missing).open_write()
    assert not missing.exists()


def test_first_difference() -> None:
    a = memoryview(bytes(8192))
    assert first_difference(a, memoryview(bytes(8192))) == 8192
    assert first_difference(a, memoryview(bytes(1000) + b"x" + bytes(7191))) == 512
    assert first_difference(a, memoryview(bytes(3000))) == 2560  # short: last full block


def test_many_targets_one_failing_does_not_stop_the_others(tmp_path: Path) -> None:
    image = _image(tmp_path / "engine.iso", 5 * MiB)
    good = [tmp_path / "a.img", tmp_path / "b.img"]
    for path in good:
        path.touch()
    report = write_many(image, [good[0], tmp_path / "missing.img", good[1]])
    statuses = [r.status for r in report.results]
    assert statuses == [TargetStatus.OK, TargetStatus.REFUSED, TargetStatus.OK]
    assert not report.all_succeeded
    assert not report.interrupted
    for path in good:
        assert path.read_bytes() == image.read_bytes()
    assert not (tmp_path / "missing.img").exists()
