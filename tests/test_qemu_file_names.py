"""Every file reaches QEMU as exactly the file named: a disk or ISO called
`victim,snapshot=off` (or with `=`, spaces, unicode) boots that file and never its namesake
`victim`, and a scratch directory with a comma in its path does not break a UEFI boot. Real
QEMU, real reference media (the marker-only kind: what is tested is how QEMU gets the file)
and disks."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from disk_images.boot import boot_installed_disk
from enginekit.qemu import BootSpec, Drive, DriveKind, Firmware, boot
from reference_builds.media import reference_iso
from reference_builds.payload import InstallerImage
from reference_builds.pytest_plugin import EngineDiskFactory

# SeaBIOS started the medium's boot loader: the file QEMU opened is the ISO (its namesake
# holds no boot record), and the rest of the boot (menu, kernel) is the same for every name.
ISOLINUX_STARTED = r"ISOLINUX \d"
# OVMF ran with its variable store from the scratch directory, wrote to the serial log there
# and found the CD's boot image: the rest of the boot opens no other scratch file.
OVMF_STARTS_THE_CD = r'BdsDxe: starting Boot\d+ "UEFI QEMU DVD-ROM'
ODD_NAMES = ["victim,snapshot=off", "victim,format=qcow2,file.filename=x", "vi ctim=ü,.iso"]


@pytest.fixture(scope="module")
def marker_medium() -> Path:
    return reference_iso("5.0.0", InstallerImage.MARKER)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _namesake(directory: Path, size: int) -> Path:
    """`victim`: what the odd names start with, a file that boots nothing."""
    victim = directory / "victim"
    victim.write_bytes(b"not bootable\n" + bytes(size - 13))
    return victim


@pytest.mark.qemu
@pytest.mark.parametrize(
    ("name", "kind"),
    [*((name, DriveKind.CDROM) for name in ODD_NAMES), (ODD_NAMES[0], DriveKind.USB)],
)
def test_an_odd_iso_name_boots_that_iso(
    marker_medium: Path, tmp_path: Path, name: str, kind: DriveKind
) -> None:
    iso = tmp_path / name
    shutil.copyfile(marker_medium, iso)
    victim = _namesake(tmp_path, 4 * 1024**2)
    before = {p: _digest(p) for p in (iso, victim)}
    spec = BootSpec(Firmware.BIOS, (Drive(iso, kind, snapshot=kind is DriveKind.USB),))
    result = boot(spec, ISOLINUX_STARTED, timeout=120, power_off_wait=0)
    assert result.matched is not None, result.tail()
    assert {p: _digest(p) for p in (iso, victim)} == before  # a snapshot boot writes neither


@pytest.mark.qemu
def test_a_scratch_directory_with_a_comma_boots_uefi(
    marker_medium: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The OVMF variable store and the serial log live in a scratch directory under TMPDIR."""
    scratch = tmp_path / "tmp,readonly=on,file=x"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    spec = BootSpec(Firmware.UEFI, (Drive(marker_medium, DriveKind.CDROM),))
    result = boot(spec, OVMF_STARTS_THE_CD, timeout=180, power_off_wait=0)
    assert result.matched is not None, result.tail()
    assert os.listdir(scratch) == []


@pytest.mark.root
@pytest.mark.qemu
def test_engine_disk_boot_acts_on_the_disk_named(
    engine_disk: EngineDiskFactory, tmp_path: Path
) -> None:
    """`victim,snapshot=off` used to boot `victim` (and spend its boot try) while the
    named disk's state was rewritten."""
    disk = engine_disk("5.0.0", size="1G", with_vms=False, name="victim,snapshot=off")
    victim = tmp_path / "victim"
    victim.touch()
    os.truncate(victim, disk.stat().st_size)
    result = boot_installed_disk(disk, timeout=180)
    assert result.ok, result.attempts
    assert result.attempts[-1].version == "5.0.0"
    assert victim.stat().st_blocks == 0  # never opened for writing, nothing booted from it
