"""A damaged primary GPT whose backup is intact is still `corrupt` (the
probe never falls back by itself), but the reason says the backup holds the Engine partitions
and names the repair; running that repair (real sgdisk, on a copy) brings the installation
back, and the probe itself writes nothing. The disk id a person confirms an erase with names
the disk, not the file: the intact backup's disk GUID, or with no readable table at all
`data-<12 hex>` from the size and first MiB."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from disk_images.errors import InvalidDiskImage
from disk_images.probe import Installation, NoInstallation, NoInstallationKind, probe
from disk_images.session import open_installation
from enginekit.process import run
from enginekit.versions import DiskLayout


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _damage_primary_header(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.seek(512 + 40)  # first usable LBA: covered by the header CRC
        value = handle.read(1)
        handle.seek(512 + 40)
        handle.write(bytes([value[0] ^ 0x01]))


def test_probe_names_the_intact_backup_and_its_repair(
    tmp_path: Path, installation_builder: Callable[..., Any]
) -> None:
    if shutil.which("sgdisk") is None:
        pytest.skip("sgdisk (Debian gdisk) is not installed")
    disk = installation_builder(tmp_path / "engine.img", DiskLayout.GPT_AB, size=600 * 1024**2).path
    _damage_primary_header(disk)
    before = _digest(disk)
    found = probe(disk)
    assert isinstance(found, NoInstallation)
    assert found.kind is NoInstallationKind.CORRUPT
    assert found.reason.startswith("GPT header CRC mismatch; the backup GPT at the end of the disk")
    assert "lists the Engine partitions" in found.reason
    assert "sgdisk -e DISK.img" in found.reason
    assert _digest(disk) == before  # the probe wrote nothing
    repaired = tmp_path / "repaired.img"
    shutil.copyfile(disk, repaired)
    run(["sgdisk", "-e", str(repaired)])
    assert isinstance(probe(repaired), Installation)


def test_no_backup_claim_when_the_backup_is_damaged_too(
    tmp_path: Path, installation_builder: Callable[..., Any]
) -> None:
    disk = installation_builder(tmp_path / "engine.img", DiskLayout.GPT_AB, size=600 * 1024**2).path
    _damage_primary_header(disk)
    with open(disk, "r+b") as handle:  # the backup header sits in the last sector
        handle.seek(-512 + 40, 2)
        value = handle.read(1)
        handle.seek(-512 + 40, 2)
        handle.write(bytes([value[0] ^ 0x01]))
    found = probe(disk)
    assert isinstance(found, NoInstallation)
    assert found.kind is NoInstallationKind.CORRUPT
    assert "neither copy is usable" in found.reason
    assert "sgdisk" not in found.reason


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
    assert isinstance(found, NoInstallation)
    assert found.kind is NoInstallationKind.CORRUPT
    assert found.disk_id == healthy.disk_id != disk.name
    _flip(disk, -512 + 40, 2)  # and now the backup header too: no readable table at all
    both = probe(disk)
    assert isinstance(both, NoInstallation)
    assert both.disk_id is not None
    assert both.disk_id.startswith("data-")
    assert len(both.disk_id) == len("data-") + 12


def test_a_session_reads_the_table_the_probe_reads(
    tmp_path: Path, installation_builder: Callable[..., Any]
) -> None:
    """One reader: a session refuses the damaged primary the probe calls corrupt, instead of
    quietly using the backup as `sfdisk --json` would."""
    disk = installation_builder(tmp_path / "engine.img", DiskLayout.GPT_AB, size=600 * 1024**2).path
    _damage_primary_header(disk)
    assert isinstance(probe(disk), NoInstallation)
    with pytest.raises(InvalidDiskImage) as caught:
        with open_installation(disk, writable=False):
            pass
    assert caught.value.message.startswith(f"{disk}: damaged partition table (")
