"""Fixtures for the disk_images tests: a builder of synthetic Engine installations.

The builder goes through the public API only (create, partition, mkfs, open_installation,
PartitionFiles), the way the installer will, so probing its output checks both sides of the
on-disk contract. It returns what it wrote, for the tests to compare with what the probe finds.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from disk_images.filesystems import make_engine_filesystems
from disk_images.image import MIB, create_image, partition_image
from disk_images.layout import (
    ESP_LOADER_CONF,
    BootEntryName,
    Slot,
    engine_partitions,
    esp_slot_dir,
    table_type,
    vm_disk_path,
)
from disk_images.session import open_installation
from disk_images.state import (
    EngineConfig,
    EngineRelease,
    EngineState,
    Registration,
    RegistrationMode,
    UpgradeStatus,
    VmKind,
    VmRecord,
)
from enginekit.secret import Secret
from enginekit.versions import DiskLayout


@dataclass(frozen=True)
class BuiltInstallation:
    path: Path
    layout: DiskLayout
    state: EngineState
    config: EngineConfig
    releases: dict[Slot, EngineRelease]
    vms: dict[str, tuple[VmRecord, int]]  # name -> (record, disk.img apparent size)
    boot_entries: tuple[str, ...] = field(default_factory=tuple)


DEFAULT_VMS = (
    (VmRecord("win7-shared", VmKind.SHARED, "4.5.0", "4.5.0"), 20 * 1024**3),
    (VmRecord("dev-custom", VmKind.CUSTOM, "4.5.0", "4.5.0"), 3 * 1024**3 + 4096),
    (VmRecord("local.vm_1", VmKind.LOCAL, "4.0.0", "4.0.0"), 0),
)


def build_installation(
    path: Path,
    layout: DiskLayout,
    *,
    size: int = 1024 * MIB,
    version: str = "4.5.0",
    other_slot_version: str | None = None,
    active: Slot = Slot.A,
    upgrade_status: UpgradeStatus = UpgradeStatus.BLANK,
    registration: Registration | None = None,
    vms: tuple[tuple[VmRecord, int], ...] = DEFAULT_VMS,
    keyboard: str = "uk",
    disk_id: str | None = None,
) -> BuiltInstallation:
    """A synthetic Engine installation on a new image at `path`."""
    registration = registration or Registration(
        RegistrationMode.SYNCHRONIZER, "sync.example.com", Secret("s3cret-token")
    )
    create_image(path, size)
    table = partition_image(
        path, table_type(layout), engine_partitions(layout, size), disk_id=disk_id
    )
    make_engine_filesystems(path, layout, table)
    gpt = layout is DiskLayout.GPT_AB
    releases: dict[Slot, EngineRelease] = {}
    if gpt:
        releases[active] = EngineRelease(version, active, version)
        if other_slot_version:
            releases[active.other] = EngineRelease(
                other_slot_version, active.other, other_slot_version
            )
    else:
        releases[Slot.A] = EngineRelease(version, None, version)
    state = EngineState(
        active_slot=active if gpt else None,
        upgrade_status=upgrade_status,
        generation=2,
        install_complete=True,
    )
    config = EngineConfig(keyboard, registration)
    entries: list[str] = []
    with open_installation(path) as session:
        for slot, release in releases.items():
            session.write_release(slot, release)
            session.slot(slot).makedirs("/usr/lib/engine")
            session.slot(slot).write_atomic("/usr/lib/engine/engined", b"#!/bin/sh\n")
        session.write_state(state)
        session.write_config(config)
        for record, disk_size in vms:
            session.write_vm(record)
            if disk_size:
                sparse = path.parent / f"{record.name}.disk"
                with open(sparse, "wb") as handle:
                    handle.truncate(disk_size)
                    handle.seek(disk_size // 2)
                    handle.write(b"data in the middle")
                session.storage.copy_in(sparse, vm_disk_path(record.name))
                sparse.unlink()
        if gpt:
            esp = session.esp
            esp.makedirs("/EFI/BOOT")
            esp.write_atomic("/EFI/BOOT/BOOTX64.EFI", b"MZ fake systemd-boot")
            esp.makedirs("/loader/entries")
            esp.write_atomic(ESP_LOADER_CONF, b"default engine-*\ntimeout 0\n")
            for slot, release in releases.items():
                esp.makedirs(esp_slot_dir(slot))
                esp.write_atomic(f"{esp_slot_dir(slot)}/vmlinuz", b"kernel " + slot.encode())
                generation = 2 if slot is active else 1
                entry = BootEntryName(generation, slot, 3 if slot is active else None)
                body = f"title Engine {release.version}\nlinux /engine/{slot.letter}/vmlinuz\n"
                esp.write_atomic(entry.path, body.encode())
                entries.append(entry.file_name)
    return BuiltInstallation(
        path=path,
        layout=layout,
        state=state,
        config=config,
        releases=releases,
        vms={record.name: (record, disk_size) for record, disk_size in vms},
        boot_entries=tuple(sorted(entries)),
    )


InstallationBuilder = Callable[..., BuiltInstallation]


@pytest.fixture
def installation_builder() -> InstallationBuilder:
    return build_installation


def sha256_of(path: Path) -> str:
    """sha256 of the file's data extents with their offsets, plus its size and mtime.

    Stricter than a plain content hash (turning a hole into written zeros changes it, and so
    does any write, through mtime) and much cheaper on sparse multi-GiB images.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        fd = handle.fileno()
        info = os.fstat(fd)
        digest.update(f"size={info.st_size} mtime={info.st_mtime_ns}\n".encode())
        position = 0
        while position < info.st_size:
            try:
                data = os.lseek(fd, position, os.SEEK_DATA)
            except OSError:
                break
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            digest.update(f"@{data}\n".encode())
            os.lseek(fd, data, os.SEEK_SET)
            remaining = hole - data
            while remaining > 0:
                chunk = os.read(fd, min(4 * 1024 * 1024, remaining))
                if not chunk:
                    break
                digest.update(chunk)
                remaining -= len(chunk)
            position = hole
    return digest.hexdigest()


@pytest.fixture
def file_hash() -> Callable[[Path], str]:
    return sha256_of
