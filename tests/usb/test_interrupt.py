"""Ctrl-C during `engine-media usb write`: a clean message, a non-zero exit, no traceback;
then `usb verify` finds where the incomplete stick stops matching.

The command runs as a real program and gets a real SIGINT. Writing is throttled through the
ENGINEKIT_USB_MAX_RATE seam; we wait until the target has really received data, stop the
writer (SIGSTOP), send the SIGINT and let it go on, so the signal lands mid-write however the
machine schedules us.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from enginekit.process import run, spawn

MiB = 1024 * 1024
IMAGE_DATA = 24 * MiB
RATE = "8M"  # per second: the whole image would take about 3 s


def _written_to_loop(device: Path) -> int:
    """Bytes the kernel has written to a block device (sectors written, field 7 of stat)."""
    fields = (Path("/sys/block") / device.name / "stat").read_text().split()
    return int(fields[6]) * 512


def _interrupt_write(
    argv: list[str], written: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str]:
    monkeypatch.setenv("ENGINEKIT_USB_MAX_RATE", RATE)
    proc = spawn(argv, stdout=-1, stderr=-1)
    try:
        # Past the two cleared MiB and into the image: the copier is in its write loop.
        while written() < 5 * MiB:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.02)  # returns at once if the writer ends
            assert proc.returncode is None, "the write finished before it could be interrupted"
        # Frozen from here on, so however slow this test is scheduled, the Ctrl-C lands in the
        # write loop: the SIGINT waits, queued, until the writer runs again.
        proc.send_signal(signal.SIGSTOP)
        try:
            proc.send_signal(signal.SIGINT)
        finally:
            proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err.decode()


def _check_interrupted(status: int, err: str, target: Path) -> None:
    assert status == 130, err
    assert "Traceback" not in err
    assert f"error: interrupted: {target} is incomplete and will not boot" in err
    assert "hint: write it again before use" in err


def _check_verify_finds_the_gap(usb_cli: list[str], iso: Path, target: Path) -> int:
    proc = run([*usb_cli, "usb", "verify", str(iso), str(target)], check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err  # a failed check, not bad input
    assert "Traceback" not in err
    match = re.search(rf"error: {re.escape(str(target))} (?:differs from the image|ends) "
                      r"at offset (\d+)", err)  # fmt: skip
    assert match, err
    offset = int(match.group(1))
    assert 4 * MiB <= offset < iso.stat().st_size
    return offset


def test_sigint_on_a_regular_file(
    tmp_path: Path,
    make_iso: Callable[[int], Path],
    usb_cli: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(IMAGE_DATA)
    target = tmp_path / "stick.img"
    # A file target stands for a stick of its size: create it sparse at the stick's size
    # and watch its allocated blocks grow as data lands.
    with open(target, "wb") as f:
        f.truncate(32 * MiB)
    status, err = _interrupt_write(
        [*usb_cli, "usb", "write", "--force", "--yes", str(iso), str(target)],
        lambda: target.stat().st_blocks * 512,
        monkeypatch,
    )
    _check_interrupted(status, err, target)
    _check_verify_finds_the_gap(usb_cli, iso, target)


@pytest.mark.root
def test_sigint_on_a_loop_device(
    loop_device: Callable[..., Path],
    make_iso: Callable[[int], Path],
    usb_cli: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(IMAGE_DATA)
    stick = loop_device(32 * MiB)
    before = _written_to_loop(stick)  # the counters outlive earlier uses of this loop device
    status, err = _interrupt_write(
        [*usb_cli, "usb", "write", "--force", "--yes", str(iso), str(stick)],
        lambda: _written_to_loop(stick) - before,
        monkeypatch,
    )
    _check_interrupted(status, err, stick)
    _check_verify_finds_the_gap(usb_cli, iso, stick)


def test_ctrl_c_message_tells_cut_sticks_from_unverified_ones() -> None:
    """A stick stopped during read-back was fully written: say so, and how to check it."""
    from media.usb.write_flow import interrupted_error
    from media.usb.writer import TargetResult, TargetStatus

    size = 48 << 20
    error = interrupted_error(
        [
            TargetResult("/dev/sdb", TargetStatus.INCOMPLETE, size, bytes_written=size // 2),
            TargetResult("/dev/sdc", TargetStatus.NOT_VERIFIED, size, bytes_written=size),
        ]
    )
    assert error.message == (
        "interrupted: /dev/sdb is incomplete and will not boot; "
        "/dev/sdc was written completely but not verified"
    )
    assert error.hint == (
        "write it again before use; check with 'engine-media usb verify ISO TARGET'"
    )
