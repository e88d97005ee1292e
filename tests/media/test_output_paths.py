"""The output rule every new-file writer shares (`enginekit.outputs`): `engine-media build -o`,
`engine-disk create` and `engine-install --record-answers` never replace a file without
--force, and never the input, a file inside the input tree, a file in use, or anything
through a symbolic link, even with --force. Real files, real locks, real loop devices."""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

import pytest

from commands.engine_disk import main as engine_disk_main
from commands.engine_media import main as engine_media_main
from media.iso_builder import HybridIsoBuilder

from .conftest import SmallPayload


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _disk_like(path: Path) -> Path:
    """A stand-in for a user's disk image: sparse, with data at both ends."""
    with open(path, "wb") as handle:
        handle.write(b"VM data\n")
        handle.seek(64 * 1024**2)
        handle.write(b"more VM data\n")
    return path


def _error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith(("error", "hint"))]


def test_build_refuses_an_existing_file_without_force(
    small_payload: SmallPayload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    disk = _disk_like(tmp_path / "disk.img")
    before = _digest(disk)
    argv = ["build", "--payload", str(small_payload()), "-o", str(disk)]
    assert engine_media_main(argv) == 2
    assert _error_lines(capsys) == [
        f"error: {disk}: already exists",
        "hint: choose another name, or pass --force to replace it",
    ]
    assert _digest(disk) == before
    assert engine_media_main([*argv, "--force"]) == 0
    assert disk.stat().st_size != 64 * 1024**2 + 13


def test_build_refuses_an_output_inside_the_payload(
    small_payload: SmallPayload, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = small_payload()
    before = sorted(p.name for p in payload.rglob("*"))
    out = payload / "engine" / "x.iso"
    assert engine_media_main(["build", "--payload", str(payload), "-o", str(out), "--force"]) == 2
    assert _error_lines(capsys)[0] == f"error: {out}: is inside the payload ({payload})"
    assert sorted(p.name for p in payload.rglob("*")) == before


def test_build_refuses_a_hard_link_to_a_payload_file_even_with_force(
    small_payload: SmallPayload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = small_payload()
    kernel = payload / "system" / "vmlinuz"
    out = tmp_path / "out.iso"
    os.link(kernel, out)
    assert engine_media_main(["build", "--payload", str(payload), "-o", str(out), "--force"]) == 2
    assert _error_lines(capsys)[0] == f"error: {out}: is a file of the payload ({payload})"
    assert kernel.read_bytes() == b"k\n"


def test_build_force_never_goes_through_a_symlink(
    small_payload: SmallPayload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    disk = _disk_like(tmp_path / "disk.img")
    before = _digest(disk)
    link = tmp_path / "link.iso"
    link.symlink_to(disk)
    argv = ["build", "--payload", str(small_payload()), "-o", str(link), "--force"]
    assert engine_media_main(argv) == 2
    assert (
        _error_lines(capsys)[0]
        == f"error: {link}: is a symbolic link; refusing to write through it"
    )
    assert _digest(disk) == before
    assert link.is_symlink()


def test_build_refuses_a_fifo_in_one_line(
    small_payload: SmallPayload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    argv = ["build", "--payload", str(small_payload()), "-o", str(fifo), "--force"]
    assert engine_media_main(argv) == 2
    lines = _error_lines(capsys)
    assert lines[0] == f"error: {fifo}: is not a regular file (a FIFO or socket)"
    assert len(lines) == 2
    assert lines[1].startswith("hint: ")


@pytest.mark.parametrize("command", ["build", "create"])
def test_force_refuses_a_file_another_holder_has_locked(
    small_payload: SmallPayload,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    """Any lock counts (here a plain flock, as `flock(1)` takes), not only EngineKit's own."""
    disk = _disk_like(tmp_path / "disk.img")
    before = _digest(disk)
    holder = os.open(disk, os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_SH)
        if command == "build":
            argv = ["build", "--payload", str(small_payload()), "-o", str(disk), "--force"]
            status = engine_media_main(argv)
        else:
            status = engine_disk_main(["create", str(disk), "--size", "8M", "--force"])
        assert status == 2
        first = _error_lines(capsys)[0]
        assert first.startswith(f"error: {disk}: is in use by "), first
        assert "flock" in first
    finally:
        os.close(holder)
    assert _digest(disk) == before


@pytest.mark.root
def test_build_force_refuses_a_file_attached_to_a_loop_device(
    small_payload: SmallPayload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from disk_images.loop import LoopDevice

    disk = _disk_like(tmp_path / "disk.img")
    before = _digest(disk)
    argv = ["build", "--payload", str(small_payload()), "-o", str(disk), "--force"]
    with LoopDevice(disk) as loop:
        assert engine_media_main(argv) == 2
        assert _error_lines(capsys)[0] == f"error: {disk}: is in use (attached to {loop.device})"
    assert _digest(disk) == before


def test_a_file_that_appears_during_the_build_is_kept(
    small_payload: SmallPayload, tmp_path: Path
) -> None:
    from enginekit.errors import UserInputError

    out = tmp_path / "x.iso"

    def newcomer(_done: int, _total: int) -> None:
        if not out.exists():
            out.write_bytes(b"someone else's file\n")

    with pytest.raises(UserInputError, match="appeared while the ISO was being built"):
        HybridIsoBuilder(small_payload(), progress=newcomer).build(out)
    assert out.read_bytes() == b"someone else's file\n"
    assert [p.name for p in tmp_path.iterdir() if ".enginekit-partial." in p.name] == []
