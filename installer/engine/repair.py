"""Repair: the medium's version is already installed; reinstall the system, keep all data.

On an A/B disk repair is an upgrade to the same version (`upgrade_in_place(repair=True)`): the
inactive slot is rewritten and verified, systemd-boot is reinstalled if it is missing or
damaged, and the next boot tries the rewritten slot with the usual fallback. The 4.0.0 MBR
disk has one system partition, so its files, kernel and extlinux are rewritten in place (each
file atomically; a kill during `extlinux --install` may need another repair); storage is
untouched.
"""

from __future__ import annotations

from disk_images.layout import MBR_EXTLINUX_CONF, PartitionRole
from disk_images.session import open_installation
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
