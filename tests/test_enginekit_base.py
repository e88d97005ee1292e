"""The shared base: process runner, sizes, versions, CLI frame."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from enginekit.cli import ArgumentParser, run_main
from enginekit.errors import CommandFailed, MissingCapability, UserInputError
from enginekit.process import run, run_text
from enginekit.sizes import human_size, parse_size
from enginekit.versions import EngineVersion
from reference_builds.builds import reference_build


def test_run_captures_and_raises_with_stderr() -> None:
    assert run_text(["sh", "-c", "echo $LC_ALL"]).strip() == "C"
    with pytest.raises(CommandFailed) as info:
        run(["sh", "-c", "echo boom >&2; exit 3"])
    assert "boom" in info.value.message
    assert "sh -c" in (info.value.hint or "")


def test_a_missing_program_is_a_missing_capability_not_a_failed_command() -> None:
    with pytest.raises(MissingCapability, match="definitely-not-a-program-xyz is not installed"):
        run(["definitely-not-a-program-xyz"])
    with pytest.raises(CommandFailed) as failed:
        run(["sh", "-c", "exit 1"])
    assert not isinstance(failed.value, MissingCapability)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8G", 8 * 1024**3), ("512M", 512 * 1024**2), ("4096B", 4096), ("1GiB", 1024**3)],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "x", "-1", "0B", "8Q", "4096"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(UserInputError):
        parse_size(text)


def test_human_size() -> None:
    assert human_size(1536) == "1.5 KiB"


def test_versions_order_numerically() -> None:
    assert EngineVersion.parse("4.10.0") > EngineVersion.parse("4.5.0")
    assert str(reference_build("5.0.0").version) == "5.0.0"
    with pytest.raises(UserInputError):
        reference_build("3.0.0")


def test_cli_frame_turns_errors_into_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    parser = ArgumentParser(prog="t")
    parser.add_argument("--debug", action="store_true")

    def handler(_args: argparse.Namespace) -> int:
        raise UserInputError("disk.img: not found", hint="check the path")

    assert run_main(parser, handler, []) == 2
    err = capsys.readouterr().err
    assert err == "error: disk.img: not found\nhint: check the path\n"


def test_cli_frame_reports_bugs_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    parser = ArgumentParser(prog="t")

    def handler(_args: argparse.Namespace) -> int:
        raise ValueError("oops")

    assert run_main(parser, handler, []) == 70
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "internal error" in err


def test_error_lines_cannot_be_forged(capsys: pytest.CaptureFixture[str]) -> None:
    """A newline or escape in an untrusted value never makes a second `error:` line."""
    parser = ArgumentParser(prog="t")

    def handler(_args: argparse.Namespace) -> int:
        raise UserInputError(
            "state.json: bad key 'x\nerror: injected\x1b[2J'",
            hint="h\nhint: fake",
            details=("one\ntwo", "\ud800"),
        )

    assert run_main(parser, handler, []) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["error", "  one\\x0atwo", "  \\ud800", "hint"]
    assert "\x1b" not in "".join(lines)


def test_scratch_sweep_removes_only_dead_owners_empty_leftovers(tmp_path: Path) -> None:
    import subprocess

    from enginekit.scratch import scratch_dir, sweep_stale

    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f"enginekit-mnt-{dead}-abc12345"
    (stale / "slot-a").mkdir(parents=True)  # an empty mount-point tree left by a SIGKILL
    kept = tmp_path / f"enginekit-mnt-{dead}-data1234"
    kept.mkdir()
    (kept / "file").write_text("never lose a byte")
    mine = scratch_dir("mnt", tmp_path)
    assert not stale.exists()
    assert (kept / "file").read_text() == "never lose a byte"
    assert mine.exists()
    assert sweep_stale("mnt", tmp_path) == 0


_KILLED_QEMU_OWNER = """
import os, signal, sys, tempfile
tempfile.tempdir = sys.argv[1]
from enginekit.qemu import BootSpec, Firmware, QemuMachine

machine = QemuMachine(BootSpec(Firmware.BIOS, (), memory_mb=64)).__enter__()
print(machine._proc.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no cleanup code runs
"""


def test_qemu_scratch_dir_is_removed_when_start_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from enginekit import qemu

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    # A machine without QEMU: nothing on PATH (and QEMU is not in the sbin directories).
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with (
        pytest.raises(MissingCapability, match="qemu-system-x86_64 is not installed"),
        qemu.QemuMachine(qemu.BootSpec(qemu.Firmware.BIOS, ())),
    ):
        pass
    assert list(scratch.iterdir()) == []


def _exits(pid: int, within: float) -> bool:
    """Whether `pid` exits (a zombie awaiting its reaper counts as gone) within `within` s:
    woken by the kernel through a pidfd the moment it does, not by polling a clock."""
    import os
    import select

    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([pidfd], [], [], within)
        return bool(readable)
    finally:
        os.close(pidfd)


@pytest.mark.qemu
def test_qemu_output_in_a_file_and_a_killed_owners_scratch_is_swept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import signal
    import sys
    import tempfile

    from enginekit.qemu import BootSpec, Drive, DriveKind, Firmware, boot

    proc = run([sys.executable, "-c", _KILLED_QEMU_OWNER, tmp_path], check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    qemu_pid = int(proc.stdout.decode().strip())
    # QEMU runs in its own session, but the kernel kills it when its owner dies.
    if not _exits(qemu_pid, within=60):
        os.killpg(qemu_pid, signal.SIGKILL)
        pytest.fail("QEMU outlived its SIGKILLed owner")
    (left,) = tmp_path.iterdir()
    assert left.name.startswith("enginekit-qemu-")
    assert (left / "serial.log").exists()

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    missing = tmp_path / "missing.img"
    result = boot(BootSpec(Firmware.BIOS, (Drive(missing, DriveKind.DISK),)), "never", 30)
    assert result.powered_off
    assert result.matched is None
    # QEMU's own error, read from its output file after it exited.
    assert "[qemu]" in result.output
    assert str(missing) in result.output
    assert list(tmp_path.iterdir()) == []  # the dead owner's dir and our own are gone
