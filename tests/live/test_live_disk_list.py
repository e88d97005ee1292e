"""engine-live reports the machine's fixed disks and leaves out removable and virtual devices."""

from __future__ import annotations

from pathlib import Path

from commands.engine_live import fixed_disks


def _block(sys_block: Path, name: str, removable: str | None, hardware: bool) -> None:
    entry = sys_block / name
    entry.mkdir(parents=True)
    if removable is not None:
        (entry / "removable").write_text(removable + "\n")
    if hardware:
        (entry / "device").mkdir()


def test_fixed_disks_are_the_non_removable_hardware_disks(tmp_path: Path) -> None:
    sys_block = tmp_path / "block"
    _block(sys_block, "sda", "0", hardware=True)
    _block(sys_block, "nvme0n1", "0", hardware=True)
    _block(sys_block, "sr0", "1", hardware=True)  # the DVD drive
    _block(sys_block, "sdb", "1", hardware=True)  # a USB stick
    _block(sys_block, "loop0", "0", hardware=False)
    _block(sys_block, "zram0", "0", hardware=False)
    assert fixed_disks(sys_block) == ("nvme0n1", "sda")
