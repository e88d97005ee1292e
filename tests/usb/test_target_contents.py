"""What a target already holds: a file holding an Engine disk (or any partitions that are
not an installer medium's) is refused without --force, naming them; a stick image written
with an Engine ISO is rewritten without --force; a stick's own partitions are only named.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from enginekit.process import require_tool, run

from .conftest import UsbWrite, attached_loop, digest, error_lines

MiB = 1024 * 1024


def partitioned_file(path: Path, sfdisk_script: str) -> Path:
    """A 16 MiB file of zeros partitioned by sfdisk from `sfdisk_script`."""
    path.write_bytes(bytes(16 * MiB))
    run([require_tool("sfdisk", "fdisk"), "-q", path], input=sfdisk_script.encode())
    return path


def test_a_file_holding_an_engine_disk_is_refused_without_force(
    engine_disk: Callable[..., Path], make_iso: Callable[[int], Path], usb_write: UsbWrite
) -> None:
    disk = engine_disk("4.5.0", size="2G", with_vms=True)
    before = digest(disk)
    status, err = usb_write(make_iso(MiB), disk, "--yes")
    assert status == 2, err
    (line,) = error_lines(err)
    assert "holds a GPT with" in line
    assert "engine-esp" in line
    assert "engine-storage" in line
    assert "--force" in err.split("hint:")[1]
    assert digest(disk) == before


def test_a_file_with_foreign_partitions_is_written_with_force(
    tmp_path: Path, make_iso: Callable[[int], Path], usb_write: UsbWrite
) -> None:
    iso = make_iso(MiB)
    image = partitioned_file(tmp_path / "data.img", "label: dos\n,4M,83\n,,83\n")
    before = digest(image)
    status, err = usb_write(iso, image, "--yes")
    assert status == 2, err
    (line,) = error_lines(err)
    assert "holds an MBR with 2 partitions" in line
    assert digest(image) == before

    status, err = usb_write(iso, image, "--yes", "--force")
    assert status == 0, err
    assert image.read_bytes()[: iso.stat().st_size] == iso.read_bytes()


def test_a_stick_image_written_with_an_engine_iso_is_written_again(
    tmp_path: Path, engine_medium: Callable[[str], Path], usb_write: UsbWrite
) -> None:
    iso = engine_medium("5.0.0")
    stick = tmp_path / "stick.img"
    stick.write_bytes(bytes(iso.stat().st_size + MiB))
    for _ in range(2):
        status, err = usb_write(iso, stick, "--yes")
        assert status == 0, err
        assert "holds" not in err
    assert stick.read_bytes()[: iso.stat().st_size] == iso.read_bytes()


@pytest.mark.root
def test_a_stick_holding_partitions_is_named_not_refused(
    tmp_path: Path, make_iso: Callable[[int], Path], usb_write: UsbWrite
) -> None:
    iso = make_iso(MiB)
    backing = partitioned_file(tmp_path / "stick.img", "label: gpt\nsize=4M, type=L, name=photos\n")
    with attached_loop(backing) as loop:
        status, err = usb_write(iso, loop, "--yes", "--force")
    assert status == 0, err
    assert "holds a GPT with 1 partition: photos" in err
