"""A target refused for several reasons gets one `error:` line, the reasons indented, one hint.

Found by a new-user walkthrough: `usb write ISO /dev/vda` printed three error/hint pairs for
the one system disk. The disk is a recorded internal SATA disk holding `/`, as /dev/vda is.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from pathlib import Path

import pytest

from commands.engine_media import main
from media.usb.discovery import BlockDeviceInfo, Holds, MountedPartition
from media.usb.policy import WriteOptions, device_refusals

MiB = 1024 * 1024


def test_several_reasons_make_one_error_line(
    tmp_path: Path,
    make_iso: Callable[[int], Path],
    recorded: Callable[[str], BlockDeviceInfo],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(1 * MiB)
    system_disk = dataclasses.replace(
        recorded("sata_internal"),
        holds=frozenset({Holds.ROOT}),
        mounted_partitions=(MountedPartition("/dev/sda1", "/"),),
        read_only=True,
    )
    refusals = device_refusals(system_disk, iso.stat().st_size, WriteOptions())
    assert len(refusals) >= 3
    monkeypatch.setattr("commands.engine_media_usb._examine", lambda *_: refusals)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))

    status = main(["usb", "write", "--yes", str(iso), "/dev/sda"])

    _, err = capsys.readouterr()
    assert status == 2
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    hints = [line for line in lines if line.startswith("hint:")]
    assert errors == [f"error: refusing /dev/sda: {len(refusals)} reasons"]
    assert hints == [f"hint: {refusals[0].hint}"]
    details = [line.strip() for line in lines if line.startswith("  ")]
    assert details == [r.reason for r in refusals]
    assert "holds the running system (/)" in details[0]


def test_a_single_reason_stays_inline(
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(1 * MiB)
    status = main(["usb", "write", "--yes", str(iso), "/dev/sdzz"])
    _, err = capsys.readouterr()
    assert status == 2
    assert err.splitlines()[0].startswith("error: refusing /dev/sdzz: no such device or file")
    assert not any(line.startswith("  ") for line in err.splitlines())
