"""What a target already holds: a file holding an Engine disk (or any partitions that are
not an installer medium's) is refused without --force, naming them; a stick image written
with an Engine ISO is rewritten without --force; a stick's own partitions are only named.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from enginekit.process import require_tool, run

from .conftest import attached_loop, error_lines, run_engine_media

MiB = 1024 * 1024


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_holding_an_engine_disk_is_refused_without_force(
    engine_disk: Callable[..., Path],
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    disk = engine_disk("4.5.0", size="2G", with_vms=True)
    iso = make_iso(MiB)
    before = digest(disk)
    argv = ["usb", "write", str(iso), str(disk), "--yes"]
    status, _, err = run_engine_media(capsys, monkeypatch, argv)
    assert status == 2, err
    (line,) = error_lines(err)
    assert "holds a GPT with" in line
    assert "engine-esp" in line
    assert "engine-storage" in line
    assert "--force" in err.split("hint:")[1]
    assert digest(disk) == before


def test_a_file_with_foreign_partitions_is_written_with_force(
    tmp_path: Path,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(MiB)
    image = tmp_path / "data.img"
    image.write_bytes(bytes(16 * MiB))
    sfdisk = require_tool("sfdisk", "fdisk")
    run([sfdisk, "-q", image], input=b"label: dos\n,4M,83\n,,83\n")
    before = digest(image)
    status, _, err = run_engine_media(
        capsys, monkeypatch, ["usb", "write", str(iso), str(image), "--yes"]
    )
    assert status == 2, err
    (line,) = error_lines(err)
    assert "holds an MBR with 2 partitions" in line
    assert digest(image) == before

    status, _, err = run_engine_media(
        capsys, monkeypatch, ["usb", "write", str(iso), str(image), "--yes", "--force"]
    )
    assert status == 0, err
    assert image.read_bytes()[: iso.stat().st_size] == iso.read_bytes()


def test_a_stick_image_written_with_an_engine_iso_is_written_again(
    tmp_path: Path,
    engine_medium: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = engine_medium("5.0.0")
    stick = tmp_path / "stick.img"
    stick.write_bytes(bytes(iso.stat().st_size + MiB))
    argv = ["usb", "write", str(iso), str(stick), "--yes"]
    for _ in range(2):
        status, _, err = run_engine_media(capsys, monkeypatch, argv)
        assert status == 0, err
        assert "holds" not in err
    assert stick.read_bytes()[: iso.stat().st_size] == iso.read_bytes()


@pytest.mark.root
def test_a_stick_holding_partitions_is_named_not_refused(
    tmp_path: Path,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(MiB)
    backing = tmp_path / "stick.img"
    backing.write_bytes(bytes(16 * MiB))
    sfdisk = require_tool("sfdisk", "fdisk")
    run([sfdisk, "-q", backing], input=b"label: gpt\nsize=4M, type=L, name=photos\n")
    with attached_loop(backing) as loop:
        argv = ["usb", "write", str(iso), str(loop), "--yes", "--force"]
        status, _, err = run_engine_media(capsys, monkeypatch, argv)
    assert status == 0, err
    assert "holds a GPT with 1 partition: photos" in err
