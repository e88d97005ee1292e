"""Review fix: the disk id a person confirms an erase with names the disk, not the file.

With only the primary GPT damaged the id is the intact backup's disk GUID (the same id the
disk had before the damage); with no readable table at all it is `data-<12 hex>` from the
size and first MiB, so two files of one name have different ids.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from disk_images.probe import Installation, NoInstallation, NoInstallationKind, probe
from enginekit.versions import DiskLayout


def _flip(path: Path, offset: int, whence: int = 0) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset, whence)
        value = handle.read(1)
        handle.seek(offset, whence)
        handle.write(bytes([value[0] ^ 0x01]))


def test_damaged_primary_gpt_is_named_by_the_backup_guid(
    tmp_path: Path, installation_builder: Callable[..., Any]
) -> None:
    disk = installation_builder(tmp_path / "engine.img", DiskLayout.GPT_AB, size=600 * 1024**2).path
    healthy = probe(disk)
    assert isinstance(healthy, Installation)
    _flip(disk, 512 + 40)  # primary header: first usable LBA, under its CRC
    found = probe(disk)
    assert isinstance(found, NoInstallation) and found.kind is NoInstallationKind.CORRUPT
    assert found.disk_id == healthy.disk_id != disk.name
    _flip(disk, -512 + 40, 2)  # and now the backup header too: no readable table at all
    both = probe(disk)
    assert isinstance(both, NoInstallation)
    assert both.disk_id is not None and both.disk_id.startswith("data-")
    assert len(both.disk_id) == len("data-") + 12
