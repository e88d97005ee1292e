"""Repair: the medium's version is already installed; reinstall the system, keep all data.

On an A/B disk repair is an upgrade to the same version (`upgrade_in_place(repair=True)`): the
inactive slot is rewritten and verified, systemd-boot is reinstalled if it is missing or
damaged, and the next boot tries the rewritten slot with the usual fallback. The 4.0.0 MBR
disk has one system partition, so its files, kernel and extlinux are rewritten in place (each
file atomically; a kill during `extlinux --install` may need another repair); storage is
untouched.

Before either, `repair_damage` fixes what the probe found damaged on an otherwise readable
installation: a disk image cut short after its last partition gets its size back (sparse, no
data changes) and a new backup GPT from the primary (`sgdisk -e`); an unreadable state.json
is rewritten with the state the disk shows (the probe's `Installation.state`).
"""

from __future__ import annotations

import os
from pathlib import Path

from disk_images.layout import MBR_EXTLINUX_CONF, PartitionRole
from disk_images.probe import Installation, Repair
from disk_images.session import open_installation
from enginekit import gpt
from enginekit.process import require_tool, run
from enginekit.versions import DiskLayout
from installer.engine import bootloader
from installer.engine.checkpoints import Checkpoint, StepTracker
from installer.engine.common import SystemImage, verify_slot, write_slot
from installer.engine.fresh import install_extlinux, write_mbr_boot_code
from installer.plan import InstallPlan


def repair_mbr(plan: InstallPlan, image: SystemImage, tracker: StepTracker) -> None:
    with open_installation(plan.target, writable=True, layout=DiskLayout.MBR) as session:
        system = session.system
        tracker.reach(Checkpoint.WRITE_SLOT)
        write_slot(system, image, None, tracker.advance, with_boot_files=True)
        tracker.reach(Checkpoint.VERIFY_SLOT)
        verify_slot(system, image, None, with_boot_files=True)
        tracker.reach(Checkpoint.WRITE_BOOT_ENTRY)
        system.makedirs("/boot/extlinux")
        system.write_atomic(MBR_EXTLINUX_CONF, bootloader.extlinux_conf(image.version))
        install_extlinux(session.mountpoint(PartitionRole.SYSTEM_A) / "boot" / "extlinux")
    write_mbr_boot_code(plan.target)


def repair_damage(target: Path, installed: Installation) -> None:
    """Carry out `installed.repairs` on `target`, the partition table first."""
    for repair in installed.repairs:
        if repair is Repair.REBUILD_BACKUP_GPT:
            _rebuild_backup_gpt(target)
        elif repair is Repair.REWRITE_STATE:
            with open_installation(target, writable=True, layout=installed.layout) as session:
                session.write_state(installed.state)


def _rebuild_backup_gpt(target: Path) -> None:
    with open(target, "rb") as stream:
        table = gpt.read_partition_table(stream)
    assert table.header is not None
    assert not table.used_backup
    described = (table.header.alternate_lba + 1) * gpt.SECTOR_SIZE
    if os.stat(target).st_size < described:
        os.truncate(target, described)  # a sparse tail: the backup GPT's place comes back
    run([require_tool("sgdisk", "gdisk"), "-e", str(target)])
