"""4.0.0 (MBR) to 4.5.0 (GPT, A/B) in place: no byte of the old system or of storage moves.

DESIGN.md fixes the regions so this works: on a 4.0.0 disk the ESP region (1-65 MiB), slot
B's region (193-321 MiB) and the last MiB are reserved and unused; the old system partition
already sits in slot A's region and storage at 321 MiB. Everything new is written into the
reserved regions first, through the image file and loop devices of our own (the MBR does not
know these regions): the ESP with systemd-boot, the old system's kernel as slot A and the new
one as slot B, boot entries (the new one counting its tries), the new system in slot B. The
single point of no return is the partition table: both GPT copies are written first (an MBR
without an 0xEE entry hides them), then one 512-byte write turns LBA 0 into the protective MBR.
A kill before that leaves a 4.0.0 disk that boots as before; after it, a 4.5.0 A/B disk whose
new slot boots next and whose old slot A is the fallback.
"""

from __future__ import annotations

import logging
import os
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from disk_images.filesystems import make_ext4, make_vfat
from disk_images.image import MIB, read_table
from disk_images.layout import (
    ESP_REGION,
    MBR_BOOT_DIR,
    SLOT_A_REGION,
    SLOT_B_REGION,
    STORAGE_REGION,
    PartitionRole,
    Slot,
    engine_partitions,
    region_bounds,
    regions,
)
from disk_images.loop import LoopDevice
from disk_images.mount import MountStack
from disk_images.partition_files import DirectoryFiles, FatFiles
from disk_images.session import open_installation
from disk_images.state import EngineState, UpgradeStatus
from enginekit.errors import InternalError
from enginekit.gpt import (
    ESP_TYPE,
    LINUX_FS_TYPE,
    MBR_SIGNATURE,
    MBR_TABLE_OFFSET,
    SECTOR_SIZE,
    NewPartition,
    build_gpt,
    protective_mbr_entry,
)
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
from installer.engine.refusals import Refused, target_size
from installer.engine.upgrade import SlotSwitch, update_shared_vms
from installer.plan import InstallPlan

log = logging.getLogger(__name__)


def _gpt_partitions(disk_size: int) -> list[NewPartition]:
    parts = []
    for spec, region in zip(
        engine_partitions(DiskLayout.GPT_AB, disk_size),
        regions(DiskLayout.GPT_AB).values(),
        strict=True,
    ):
        assert spec.start is not None
        assert spec.size is not None
        type_guid = ESP_TYPE if region.role is PartitionRole.ESP else LINUX_FS_TYPE
        parts.append(
            NewPartition.sized(
                spec.start // SECTOR_SIZE, spec.size, type_guid, region.partlabel or ""
            )
        )
    return parts


def switched_to_gpt(target: Path) -> bool:
    """Whether LBA 0 already holds the protective MBR (the migration's point of no return)."""
    with open(target, "rb") as handle:
        sector = handle.read(SECTOR_SIZE)
    return len(sector) == SECTOR_SIZE and sector[MBR_TABLE_OFFSET + 4] == 0xEE


def switch_to_gpt(target: Path, disk_size: int) -> None:
    """The point of no return, in two ordered, fsynced writes (see the module docstring)."""
    image = build_gpt(disk_size, _gpt_partitions(disk_size))
    primary = image.primary_header.ljust(SECTOR_SIZE, b"\0")
    backup = image.backup_header.ljust(SECTOR_SIZE, b"\0")
    blocks = [
        (1, primary + image.entry_array),  # primary header + entry array
        (image.backup_array_lba, image.entry_array + backup),  # backup array + header
    ]
    protective = protective_mbr_entry(disk_size // SECTOR_SIZE).to_bytes().ljust(64, b"\0")
    fd = os.open(target, os.O_RDWR | os.O_CLOEXEC)
    try:
        for lba, data in blocks:
            os.pwrite(fd, data, lba * SECTOR_SIZE)
        os.fsync(fd)
        current = os.pread(fd, SECTOR_SIZE, 0)
        # Boot code and disk signature stay; only the table (and its 0x55AA) changes.
        lba0 = current[:MBR_TABLE_OFFSET] + protective + MBR_SIGNATURE
        os.pwrite(fd, lba0, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_reserved_regions_free(target: Path, disk_size: int) -> None:
    """Refuse (before any write) a 4.0.0 disk whose reserved regions are not free."""
    table = read_table(target)
    starts = sorted((p.start_bytes, p.end_bytes) for p in table.partitions)
    a_start, a_size = region_bounds(SLOT_A_REGION, disk_size)
    s_start, _ = region_bounds(STORAGE_REGION, disk_size)
    expected_ends_ok = len(starts) == 2 and starts[0] == (a_start, a_start + a_size)
    if not expected_ends_ok or starts[1][0] != s_start or starts[1][1] > disk_size - MIB:
        raise Refused(
            f"{target}: the 4.0.0 partitions are not where Engine 4.0.0 puts them "
            "(the regions reserved for the ESP, slot B and the backup GPT must be free)",
            hint="this disk cannot be migrated in place; erase and reinstall",
        )
    if disk_size % MIB:
        raise Refused(
            f"{target}: its size ({disk_size} bytes) is not a whole number of MiB",
            hint="this disk cannot be migrated in place; erase and reinstall",
        )


def migrate_mbr_to_gpt(
    plan: InstallPlan, image: SystemImage, installed_version: str, tracker: StepTracker
) -> SlotSwitch:
    """Upgrade the 4.0.0 MBR disk `plan.target` to `image` (A/B GPT) without moving data.

    The three sessions below share the disk lock `run_plan` holds for the whole run, so no
    other process can open the disk while its table is rewritten between them.
    """
    disk_size = target_size(plan.target, device=plan.target_is_device)
    esp_start, esp_size = region_bounds(ESP_REGION, disk_size)
    b_start, b_size = region_bounds(SLOT_B_REGION, disk_size)
    _check_reserved_regions_free(plan.target, disk_size)
    # The old system becomes slot A untouched: read it through a read-only mount, which
    # does not even update its superblock.
    with open_installation(plan.target, writable=False, layout=DiskLayout.MBR) as session:
        old_kernel = session.system.read(f"{MBR_BOOT_DIR}/{bootloader.KERNEL_NAME}")
        old_initrd = session.system.read(f"{MBR_BOOT_DIR}/{bootloader.INITRD_NAME}")
        old_release = session.read_release(Slot.A)
    old_version = old_release.version if old_release else installed_version
    old = SystemImage(old_version, installed_version, (), old_kernel, old_initrd)
    with open_installation(plan.target, writable=True, layout=DiskLayout.MBR) as session:
        state = session.read_state()
        if state is None:
            raise InternalError(f"{plan.target}: the probe found an installation but no state")
        old_config = session.read_config()
        tracker.reach(Checkpoint.MARK_SIGNALLED)
        # active_slot A already: the MBR probe ignores it, and after the switch it is true.
        signalled = EngineState(
            active_slot=Slot.A,
            upgrade_status=UpgradeStatus.SIGNALLED,
            generation=1,
            install_complete=True,
        )
        session.write_state(signalled)
        try:
            tracker.reach(Checkpoint.MKFS)
            # The reserved regions, formatted through the image file: the MBR has no partitions
            # there, and whatever a killed earlier attempt left in them is simply overwritten.
            make_vfat(plan.target, ESP_REGION.fs_label, offset=esp_start, size=esp_size)
            make_ext4(plan.target, SLOT_B_REGION.fs_label, offset=b_start, size=b_size)

            with ExitStack() as stack:
                loop = stack.enter_context(
                    LoopDevice(plan.target, offset=b_start, size_limit=b_size)
                )
                mounts = stack.enter_context(MountStack())
                slot_b = DirectoryFiles(mounts.mount(loop.device, "slot-b"), label="slot-b")
                tracker.reach(Checkpoint.WRITE_SLOT)
                write_slot(slot_b, image, Slot.B, tracker.advance)
                tracker.reach(Checkpoint.VERIFY_SLOT)
                verify_slot(slot_b, image, Slot.B)

            esp = FatFiles(plan.target, esp_start, label="esp")
            tracker.reach(Checkpoint.INSTALL_BOOTLOADER)
            install_systemd_boot(esp)
            tracker.reach(Checkpoint.WRITE_ESP_KERNEL)
            write_esp_kernel(esp, old, Slot.A)
            write_esp_kernel(esp, image, Slot.B)

            tracker.reach(Checkpoint.WRITE_CONFIG)
            config = new_config(plan, old_config)
            if config != old_config:
                session.write_config(config)
            tracker.reach(Checkpoint.UPDATE_VMS)
            update_shared_vms(session, image)

            tracker.reach(Checkpoint.WRITE_BOOT_ENTRY)
            write_entry(esp, bootloader.new_entry(1, Slot.A, counting=False), old_version)
            write_entry(esp, bootloader.new_entry(2, Slot.B, counting=True), image.version)

            tracker.reach(Checkpoint.SWITCH_TABLE)
            switch_to_gpt(plan.target, disk_size)
        except (Exception, KeyboardInterrupt):
            # Before the switch: still the 4.0.0 MBR disk, booting as before.
            if not switched_to_gpt(plan.target):
                try:
                    session.write_state(replace(signalled, upgrade_status=UpgradeStatus.FAILED))
                except Exception as nested:  # noqa: BLE001 - report the first error
                    log.warning("could not record the failed migration: %s", nested)
            raise

    tracker.reach(Checkpoint.SET_STATUS)
    with open_installation(plan.target, writable=True, layout=DiskLayout.GPT_AB) as session:
        session.write_state(
            EngineState(
                active_slot=Slot.A,
                upgrade_status=UpgradeStatus.INSTALLED_REBOOT_REQUIRED,
                generation=1,
                pending_slot=Slot.B,
                previous_version=installed_version,
                install_complete=True,
            )
        )
    return SlotSwitch(active_slot=Slot.A, new_slot=Slot.B, generation=2)
