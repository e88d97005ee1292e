"""The busybox initramfs images, unpacked by cpio(1) and booted for real in QEMU.

The installed Engine's init must find its slot and storage by label on a virtio disk built
without root (sfdisk + mkfs.ext4 -d -E offset=) and report version, slot and VM count, or a
FAILED line when the storage partition is missing. (The installer init's marker, with the
right firmware under BIOS and UEFI, is booted from the marker medium on a stick in
tests/usb/test_usb_boot.py.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from enginekit import qemu
from enginekit.errors import UserInputError
from enginekit.process import require_tool, run, run_text
from enginekit.qemu import BootSpec, Drive, DriveKind, Firmware, boot
from reference_builds.initramfs import engine_initramfs, installer_initramfs
from reference_builds.kernel import Kernel

MiB = 1024 * 1024
APPEND = "console=ttyS0 panic=-1"


# --- the archive itself --------------------------------------------------------------------


def cpio_listing(image: bytes, tmp_path: Path) -> str:
    import gzip

    archive = tmp_path / "initrd.cpio"
    archive.write_bytes(gzip.decompress(image))
    cpio = require_tool("cpio", "cpio")
    return run_text([cpio, "-itv", "--quiet", "-F", archive])


def test_installer_initramfs_is_deterministic_and_well_formed(tmp_path: Path) -> None:
    image = installer_initramfs("4.5.0")
    assert image == installer_initramfs("4.5.0")
    assert image != installer_initramfs("5.0.0")
    listing = cpio_listing(image, tmp_path)
    lines = {line.split()[-1] if "->" not in line else line.split()[-3]: line
             for line in listing.splitlines()}  # fmt: skip
    assert lines["dev/console"].startswith("crw-------")
    assert re.search(r"\b5,\s*1\b", lines["dev/console"])
    assert lines["init"].startswith("-rwxr-xr-x")
    assert lines["bin/busybox"].startswith("-rwxr-xr-x")
    assert lines["bin/sh"].startswith("lrwxrwxrwx")
    assert lines["bin/sh"].endswith("busybox")
    for directory in ("proc", "sys", "dev", "mnt"):
        assert lines[directory].startswith("drwxr-xr-x")
    # Owned by root with a zero mtime, whatever the host.
    for line in listing.splitlines():
        assert re.search(r"\broot\s+root\b.*\b1970\b", line), line


def test_engine_initramfs_carries_the_modules_in_order(tmp_path: Path, kernel: Kernel) -> None:
    image = engine_initramfs(kernel)
    assert image == engine_initramfs(kernel)
    listing = cpio_listing(image, tmp_path)
    for module in kernel.modules:
        assert f"lib/modules/{module.name}" in listing


def test_versions_cannot_smuggle_shell_into_init() -> None:
    with pytest.raises(UserInputError):
        installer_initramfs('5.0.0"; reboot; echo "')


# --- real boots ----------------------------------------------------------------------------


def _check_boot(result: qemu.BootResult, expected: str) -> None:
    assert result.matched == expected, (
        f"wanted {expected!r}, got {result.matched!r} after {result.seconds:.1f}s "
        f"(timed out: {result.timed_out}); console: {result.tail(8)}"
    )
    assert result.powered_off, "the init must power the machine off"


def _engine_disk(
    tmp_path: Path, slots: dict[str, str], vms: int, with_storage: bool = True
) -> Path:
    """A 512 MiB sparse GPT disk laid out as DESIGN.md says, built without root.

    `slots` maps "A"/"B" to the version written into that slot's /engine-release.
    """
    sfdisk = require_tool("sfdisk", "fdisk")
    mkfs = require_tool("mkfs.ext4", "e2fsprogs")
    image = tmp_path / "engine-disk.img"
    with image.open("wb") as f:
        f.truncate(512 * MiB)
    table = [
        "label: gpt",
        "start=1MiB, size=64MiB, type=U, name=engine-esp",
        "start=65MiB, size=128MiB, type=L, name=engine-system-a",
        "start=193MiB, size=128MiB, type=L, name=engine-system-b",
    ]
    if with_storage:
        table.append("start=321MiB, size=190MiB, type=L, name=engine-storage")
    run([sfdisk, "--quiet", image], input=("\n".join(table) + "\n").encode())

    def mkfs_at(label: str, start_mib: int, size_mib: int, tree: Path) -> None:
        run([mkfs, "-q", "-F", "-L", label, "-d", tree, "-E", f"offset={start_mib * MiB}",
             image, f"{size_mib * 1024}"])  # fmt: skip

    for slot, version in slots.items():
        tree = tmp_path / f"slot-{slot}"
        tree.mkdir()
        release = {"product": "Engine", "version": version, "slot": slot, "pv_drivers": version}
        (tree / "engine-release").write_text(json.dumps(release, indent=2) + "\n")
        start = 65 if slot == "A" else 193
        mkfs_at(f"engine-sys-{slot.lower()}", start, 128, tree)
    if with_storage:
        tree = tmp_path / "storage"
        for i in range(vms):
            (tree / "vms" / f"vm{i}").mkdir(parents=True)
            (tree / "vms" / f"vm{i}" / "vm.json").write_text(json.dumps({"name": f"vm{i}"}))
        (tree / "vms" / "half-copied").mkdir(parents=True)  # no vm.json: not a VM
        (tree / "engine").mkdir(parents=True)
        mkfs_at("engine-storage", 321, 190, tree)
    return image


@pytest.mark.qemu
def test_engine_init_reports_version_slot_and_vms(tmp_path: Path, kernel: Kernel) -> None:
    disk = _engine_disk(tmp_path, {"A": "4.5.0", "B": "5.0.0"}, vms=3)
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(engine_initramfs(kernel))
    spec = BootSpec(
        firmware=Firmware.BIOS,
        drives=(Drive(disk, DriveKind.DISK, snapshot=True),),
        kernel=kernel.vmlinuz,
        initrd=initrd,
        append=f"{APPEND} engine.slot=B",
    )
    result = boot(spec, r"ENGINE (RUNNING|BOOT FAILED)", timeout=90)
    _check_boot(result, "ENGINE RUNNING version=5.0.0 slot=B vms=3")


@pytest.mark.qemu
def test_engine_init_fails_cleanly_without_storage(tmp_path: Path, kernel: Kernel) -> None:
    disk = _engine_disk(tmp_path, {"A": "4.0.0"}, vms=0, with_storage=False)
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(engine_initramfs(kernel))
    spec = BootSpec(
        firmware=Firmware.BIOS,
        drives=(Drive(disk, DriveKind.DISK, snapshot=True),),
        kernel=kernel.vmlinuz,
        initrd=initrd,
        append=f"{APPEND} engine.slot=A",
    )
    result = boot(spec, r"ENGINE (RUNNING|BOOT FAILED)", timeout=90)
    _check_boot(result, "ENGINE BOOT FAILED reason=no-partition-engine-storage")
