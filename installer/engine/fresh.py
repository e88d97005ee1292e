"""Fresh install and erase: lay out the whole disk and install Engine from the medium.

The layout follows DESIGN.md by the medium's layout: `gpt-ab` gets an ESP with systemd-boot,
both system slots written with the same system (so there is a fallback from day one), one boot
entry per slot; `mbr` (Engine 4.0.0) gets one system partition booted by extlinux from the
syslinux MBR. Storage gets the keyboard and registration config, an empty `/vms`, and
`state.json` last: until it exists the probe calls the disk an incomplete install, so a run
killed midway is recognised and simply run again.
"""

from __future__ import annotations

import os
from pathlib import Path

from disk_images.filesystems import make_engine_filesystems
from disk_images.image import partition_image
from disk_images.layout import (
    VMS_DIR,
    PartitionRole,
    Slot,
    engine_partitions,
    table_type,
)
from disk_images.session import open_installation
from disk_images.state import EngineConfig, EngineState, UpgradeStatus
from enginekit.process import require_tool, run
from enginekit.versions import DiskLayout
from installer.engine import bootloader
from installer.engine.checkpoints import Checkpoint, StepTracker
from installer.engine.common import (
    SystemImage,
    install_systemd_boot,
    verify_slot,
    write_entry,
    write_esp_kernel,
    write_slot,
)
from installer.engine.config import new_config
from installer.plan import InstallPlan

MBR_BOOT_CODE = 440  # bytes of boot code before the disk signature and the table


def fresh_install(
    plan: InstallPlan,
    image: SystemImage,
    layout: DiskLayout,
    disk_size: int,
    tracker: StepTracker,
    old_config: EngineConfig | None = None,
) -> Slot | None:
    """Partition, format and install; returns the active slot (None on MBR).

    The caller (`run_plan`) holds the target's disk lock for the whole run: partitioning and
    mkfs happen before `open_installation`, which only shares that lock.
    """
    tracker.reach(Checkpoint.PARTITION)
    table = partition_image(plan.target, table_type(layout), engine_partitions(layout, disk_size))
    tracker.reach(Checkpoint.MKFS)
    make_engine_filesystems(plan.target, layout, table)
    config = new_config(plan, old_config)
    with open_installation(plan.target, writable=True, layout=layout) as session:
        if layout is DiskLayout.MBR:
            tracker.reach(Checkpoint.WRITE_SLOT)
            write_slot(session.system, image, None, tracker.advance, with_boot_files=True)
            tracker.reach(Checkpoint.VERIFY_SLOT)
            verify_slot(session.system, image, None, with_boot_files=True)
            tracker.reach(Checkpoint.INSTALL_BOOTLOADER)
            session.system.makedirs("/boot/extlinux")
            session.system.write_atomic(
                "/boot/extlinux/extlinux.conf", bootloader.extlinux_conf(image.version)
            )
            install_extlinux(session.mountpoint(PartitionRole.SYSTEM_A) / "boot" / "extlinux")
            write_mbr_boot_code(plan.target)
            active: Slot | None = None
            generation = 1
        else:
            tracker.reach(Checkpoint.WRITE_SLOT)
            for index, slot in enumerate((Slot.A, Slot.B)):
                write_slot(
                    session.slot(slot),
                    image,
                    slot,
                    lambda f, i=index: tracker.advance((i + f) / 2),  # type: ignore[misc]
                )
            tracker.reach(Checkpoint.VERIFY_SLOT)
            for slot in (Slot.A, Slot.B):
                verify_slot(session.slot(slot), image, slot)
            tracker.reach(Checkpoint.INSTALL_BOOTLOADER)
            install_systemd_boot(session.esp)
            tracker.reach(Checkpoint.WRITE_ESP_KERNEL)
            for slot in (Slot.A, Slot.B):
                write_esp_kernel(session.esp, image, slot)
            tracker.reach(Checkpoint.WRITE_BOOT_ENTRY)
            # A newest, B one generation older: A boots, B is the fallback.
            write_entry(session.esp, bootloader.new_entry(0, Slot.B, counting=False), image.version)
            write_entry(session.esp, bootloader.new_entry(1, Slot.A, counting=False), image.version)
            active = Slot.A
            generation = 1
        tracker.reach(Checkpoint.WRITE_CONFIG)
        session.write_config(config)
        session.storage.makedirs(VMS_DIR)
        tracker.reach(Checkpoint.SET_STATUS)
        session.write_state(
            EngineState(
                active_slot=active,
                upgrade_status=UpgradeStatus.BLANK,
                generation=generation,
                install_complete=True,
            )
        )
    return active


def install_extlinux(directory: Path) -> None:
    """extlinux into the mounted system partition (its ldlinux.sys knows its own blocks)."""
    extlinux = require_tool("extlinux", "extlinux")
    run([extlinux, "--install", str(directory)], timeout=60)


def write_mbr_boot_code(target: Path) -> None:
    """syslinux's mbr.bin into the first 440 bytes; the signature and table stay as they are."""
    code = bootloader.syslinux_mbr()[:MBR_BOOT_CODE]
    fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.pwrite(fd, code, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
