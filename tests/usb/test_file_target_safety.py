"""`usb write` never writes a file in use, nor (without --force) a disk image that holds
partitions other than an installer medium's; a stick image written with an Engine ISO is
rewritten as before.

Real files, real locks (flock and the OFD byte-range locks QEMU takes on bytes 100-299), a
real loop device, a real Engine disk from the reference builds.
"""

from __future__ import annotations

import fcntl
import os
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import UsbWrite, attached_loop, digest, error_lines

MiB = 1024 * 1024


@contextmanager
def qemu_style_lock(path: Path) -> Iterator[None]:
    """An OFD read lock on bytes 100-299 of `path`, as a running QEMU holds on its drives."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi", fcntl.F_RDLCK, 0, 100, 200, 0))
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class HeldStick:
    """A stick image the size of `iso` plus 1 MiB of random bytes, to write `iso` onto while
    something holds it."""

    iso: Path
    stick: Path
    before: str
    usb_write: UsbWrite

    def refused(self, words: str, target: Path | None = None) -> str:
        """Write `iso` onto `target` (the stick) with --force: refused with one error line
        holding `words` and a hint, and not one byte of the stick changed. The stderr."""
        status, err = self.usb_write(self.iso, target or self.stick, "--yes", "--force")
        assert status == 2, err
        (line,) = error_lines(err)
        assert words in line
        assert "hint:" in err
        assert digest(self.stick) == self.before
        return err


@pytest.fixture
def held_stick(tmp_path: Path, make_iso: Callable[[int], Path], usb_write: UsbWrite) -> HeldStick:
    iso = make_iso(MiB)
    stick = tmp_path / "stick.img"
    stick.write_bytes(os.urandom(iso.stat().st_size + MiB))
    return HeldStick(iso, stick, digest(stick), usb_write)


def test_a_file_under_flock_is_refused(held_stick: HeldStick) -> None:
    with open(held_stick.stick, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        err = held_stick.refused("is in use by process")
    assert "flock" in err


def test_a_file_a_virtual_machine_has_open_is_refused(held_stick: HeldStick) -> None:
    with qemu_style_lock(held_stick.stick):
        held_stick.refused("is in use by a QEMU virtual machine")


@pytest.mark.root
def test_a_file_attached_to_a_loop_device_is_refused(held_stick: HeldStick) -> None:
    with attached_loop(held_stick.stick) as loop:
        held_stick.refused(f"is in use (attached to {loop})")


@pytest.mark.root
def test_a_loop_device_over_a_file_a_virtual_machine_uses_is_refused_even_with_force(
    held_stick: HeldStick,
) -> None:
    with attached_loop(held_stick.stick) as loop, qemu_style_lock(held_stick.stick):
        held_stick.refused(
            "is a loop device over a file in use by a QEMU virtual machine", target=loop
        )
