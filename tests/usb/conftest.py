"""Fixtures for the USB tests: small random ISOs built with xorriso, loop devices as sticks.

Loop devices are real block devices, so writing to one goes through the same kernel paths
(O_EXCL, BLKGETSIZE64, BLKROGET, O_DIRECT, BLKRRPART) as a USB stick. Each one is held open
by the test that attached it and released through that descriptor when the test ends, even
when it fails; no test ever acts on a loop device by a number it read earlier.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from enginekit.process import require_tool, run
from media.usb.discovery import (
    BlockDeviceInfo,
    Holds,
    MountedPartition,
    device_info_from_record,
    parse_udevadm_export,
)
from reference_builds.pytest_plugin import sparse_digest

FIXTURES = Path(__file__).parent / "fixtures"
MiB = 1024 * 1024


@pytest.fixture
def recorded() -> Callable[[str], BlockDeviceInfo]:
    """Factory: a recorded device by fixture name (`usb_stick`, `nvme_internal`, ...)."""
    return load_fixture


def load_fixture(name: str) -> BlockDeviceInfo:
    """A recorded device (udevadm export + sysfs + what was mounted) as BlockDeviceInfo."""
    record = json.loads((FIXTURES / f"{name}.json").read_text())
    return device_info_from_record(
        parse_udevadm_export("\n".join(record["udevadm_export"])),
        record["sysfs"],
        mounted_partitions=[MountedPartition(**m) for m in record["mounted_partitions"]],
        holds=[Holds(h) for h in record["holds"]],
    )


def build_iso(directory: Path, data_bytes: int, name: str = "engine.iso") -> Path:
    """An ISO 9660 image holding `data_bytes` of random data (random, so that a target left
    with zeros or old data never matches by accident)."""
    tree = directory / f"{name}.tree"
    tree.mkdir()
    (tree / "data.bin").write_bytes(os.urandom(data_bytes))
    iso = directory / name
    xorriso = require_tool("xorriso", "xorriso")
    run([xorriso, "-as", "mkisofs", "-quiet", "-o", iso, tree])
    return iso


@pytest.fixture
def make_iso(tmp_path: Path) -> Callable[[int], Path]:
    counter = iter(range(1000))

    def make(data_bytes: int) -> Path:
        return build_iso(tmp_path, data_bytes, name=f"engine-{next(counter)}.iso")

    return make


@contextlib.contextmanager
def attached_loop(backing: Path, *, read_only: bool = False) -> Iterator[Path]:
    """`backing` attached to a loop device that this test holds open until the block ends.

    The device is attached with autoclear and released through our own descriptor, never by
    its number: once we let go, the number may belong to another test at once."""
    from disk_images.loop import LoopDevice

    with LoopDevice(backing, read_only=read_only) as loop:
        yield loop.device


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Factory: a loop device over a new sparse file of `size` bytes (detached afterwards)."""
    with contextlib.ExitStack() as stack:
        counter = iter(range(1000))

        def make(size: int, *, read_only: bool = False, fill: bytes | None = None) -> Path:
            backing = tmp_path / f"stick-{next(counter)}.img"
            with open(backing, "wb") as f:
                f.truncate(size)
                if fill is not None:
                    f.write(fill * (size // len(fill)))
            return stack.enter_context(attached_loop(backing, read_only=read_only))

        yield make


@pytest.fixture
def usb_cli() -> list[str]:
    return usb_cli_argv()


def usb_cli_argv() -> list[str]:
    """How to run `engine-media usb ...` as a program (the installed console script)."""
    script = Path(sys.executable).parent / "engine-media"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "commands.engine_media"]


def run_engine_media(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    stdin: str = "",
) -> tuple[int, str, str]:
    """`engine-media ARGV` in-process with `stdin` as its input: (status, stdout, stderr).
    A traceback on stderr fails the calling test."""
    from commands.engine_media import main

    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    status = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return status, out, err


#: `usb write ISO TARGET FLAGS...` run in-process: (exit status, stderr).
UsbWrite = Callable[..., tuple[int, str]]


@pytest.fixture
def usb_write(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> UsbWrite:
    """`engine-media usb write ISO TARGET FLAGS...` in-process: (exit status, stderr)."""

    def write(iso: Path, target: Path, *flags: str) -> tuple[int, str]:
        argv = ["usb", "write", str(iso), str(target), *flags]
        status, _, err = run_engine_media(capsys, monkeypatch, argv)
        return status, err

    return write


def digest(path: Path) -> str:
    """SHA-256 over the file's length, hole map and data: equal before and after means not
    one byte changed (and no hole was filled), without reading a sparse disk's holes."""
    return sparse_digest(path)


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]
