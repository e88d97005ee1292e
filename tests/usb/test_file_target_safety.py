"""`usb write` never writes a file in use, nor (without --force) a disk image that holds
partitions other than an installer medium's; a stick image written with an Engine ISO is
rewritten as before.

Real files, real locks (flock and the OFD byte-range locks QEMU takes on bytes 100-299), a
real loop device, a real Engine disk from the reference builds.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .conftest import attached_loop, error_lines, run_engine_media

MiB = 1024 * 1024


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextmanager
def qemu_style_lock(path: Path) -> Iterator[None]:
    """An OFD read lock on bytes 100-299 of `path`, as a running QEMU holds on its drives."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi", fcntl.F_RDLCK, 0, 100, 200, 0))
        yield
    finally:
        os.close(fd)


def stick_file(tmp_path: Path, iso: Path) -> Path:
    stick = tmp_path / "stick.img"
    stick.write_bytes(os.urandom(iso.stat().st_size + MiB))
    return stick


def assert_refused(err: str, status: int, words: str) -> None:
    assert status == 2, err
    (line,) = error_lines(err)
    assert words in line
    assert "hint:" in err


def test_a_file_under_flock_is_refused(
    tmp_path: Path,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(MiB)
    stick = stick_file(tmp_path, iso)
    before = digest(stick)
    with open(stick, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        argv = ["usb", "write", str(iso), str(stick), "--yes", "--force"]
        status, _, err = run_engine_media(capsys, monkeypatch, argv)
    assert_refused(err, status, "is in use by process")
    assert "flock" in err
    assert digest(stick) == before


def test_a_file_a_virtual_machine_has_open_is_refused(
    tmp_path: Path,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(MiB)
    stick = stick_file(tmp_path, iso)
    before = digest(stick)
    with qemu_style_lock(stick):
        argv = ["usb", "write", str(iso), str(stick), "--yes", "--force"]
        status, _, err = run_engine_media(capsys, monkeypatch, argv)
    assert_refused(err, status, "is in use by a QEMU virtual machine")
    assert digest(stick) == before


@pytest.mark.root
def test_a_file_attached_to_a_loop_device_is_refused(
    tmp_path: Path,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(MiB)
    stick = stick_file(tmp_path, iso)
    before = digest(stick)
    with attached_loop(stick) as loop:
        argv = ["usb", "write", str(iso), str(stick), "--yes", "--force"]
        status, _, err = run_engine_media(capsys, monkeypatch, argv)
    assert_refused(err, status, f"is in use (attached to {loop})")
    assert digest(stick) == before


@pytest.mark.root
def test_a_loop_device_over_a_file_a_virtual_machine_uses_is_refused_even_with_force(
    tmp_path: Path,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(MiB)
    stick = stick_file(tmp_path, iso)
    before = digest(stick)
    with attached_loop(stick) as loop, qemu_style_lock(stick):
        argv = ["usb", "write", str(iso), str(loop), "--yes", "--force"]
        status, _, err = run_engine_media(capsys, monkeypatch, argv)
    assert_refused(err, status, "is a loop device over a file in use by a QEMU virtual machine")
    assert digest(stick) == before
