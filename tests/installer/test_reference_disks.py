"""Reference disks of every reference build: made through the real installer, recognised by
the probe (golden fixtures of each on-disk format we read), sparse, with the sample VMs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from commands.engine_disk import main as engine_disk_main
from disk_images.probe import Installation, probe
from disk_images.session import open_installation
from reference_builds.builds import REFERENCE_BUILDS
from reference_builds.disk import (
    SAMPLE_VMS,
    VM_DATA_LEN,
    VM_DATA_OFFSETS,
    VM_DISK_APPARENT,
    sample_vm_bytes,
)
from reference_builds.pytest_plugin import EngineDiskFactory

pytestmark = [pytest.mark.root]


@pytest.mark.parametrize("version", sorted(REFERENCE_BUILDS))
def test_reference_disk(version: str, engine_disk: EngineDiskFactory) -> None:
    disk = engine_disk(version, size="1G")
    found = probe(disk)
    assert isinstance(found, Installation)
    build = REFERENCE_BUILDS[version]
    assert found.version == version
    assert found.layout is build.layout
    assert found.install_complete
    assert found.keyboard == "us"
    assert not found.registered
    kinds = sorted(vm.kind for vm in found.vms)
    assert kinds == ["custom", "local", "shared", "shared"]
    assert {vm.published_for for vm in found.vms} == {version}
    assert {vm.pv_drivers for vm in found.vms} == {build.pv_drivers}
    assert all(vm.size_bytes == VM_DISK_APPARENT for vm in found.vms)
    # the image stays sparse: far less allocated than 1 GiB plus 4 x 256 MiB of VM disks
    assert os.stat(disk).st_blocks * 512 < 200 * 1024 * 1024
    with open_installation(disk, writable=False) as session:
        for vm in SAMPLE_VMS:
            data = session.storage.read(f"/vms/{vm.name}/disk.img")
            for index, offset in enumerate(VM_DATA_OFFSETS):
                assert data[offset : offset + VM_DATA_LEN] == sample_vm_bytes(vm.name, index)


def test_engine_disk_create_engine_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    disk = tmp_path / "ref.img"
    assert engine_disk_main(["create", str(disk), "--size", "1G", "--engine", "5.0.0"]) == 0
    assert "reference Engine 5.0.0" in capsys.readouterr().out
    found = probe(disk)
    assert isinstance(found, Installation)
    assert found.version == "5.0.0"
    assert len(found.vms) == 4


def test_engine_disk_create_unknown_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        engine_disk_main(["create", str(tmp_path / "x.img"), "--engine", "9.9.9"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    assert not (tmp_path / "x.img").exists()


def test_engine_disk_create_too_small_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    disk = tmp_path / "small.img"
    assert engine_disk_main(["create", str(disk), "--size", "256M", "--engine", "5.0.0"]) == 2
    assert "too small" in capsys.readouterr().err
    assert not disk.exists()
