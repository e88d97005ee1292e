"""What `check_plan` learns from the disk before the first write: does it fit, can it be read.

Two refusals that used to surface half-way through a run (after slot B was emptied and the
status set to Failed, or after an erase had wiped the disk): a system tree that does not fit a
system slot, kernel and initrd that do not fit the ESP, and an ESP or storage filesystem that
cannot be read. Sizes come from the disk as it is (upgrade, repair) or from the layout the run
will create (fresh install, erase, MBR-to-GPT migration); readability is tried with the tools
the run itself uses (mtools for the ESP, debugfs for ext4), read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from disk_images.esp_reader import EspReader
from disk_images.layout import (
    ESP_REGION,
    MBR_REGIONS,
    SLOT_B_REGION,
    PartitionRole,
    partition_number,
    region_bounds,
    regions,
)
from disk_images.probe import Installation
from enginekit import gpt
from enginekit.process import require_tool, run
from enginekit.sizes import human_size
from enginekit.tool_paths import plain_name
from enginekit.versions import DiskLayout
from installer.engine.bootloader import systemd_boot_binary
from installer.engine.common import SystemImage
from installer.engine.refusals import Refused
from installer.plan import InstallMode, InstallPlan

# A file costs its bytes rounded up to 4 KiB plus 4 KiB of inode/extent/directory slack; the
# filesystem itself (inode tables, journal, group descriptors) keeps this share of the
# partition. Measured on our mkfs: a 128 MiB slot has 114 MiB free, a 64 MiB ESP 63 MiB.
BLOCK = 4096
EXT4_OVERHEAD = 0.12
VFAT_OVERHEAD = 0.04


def _cost(size: int) -> int:
    return -(-size // BLOCK) * BLOCK + BLOCK


def slot_bytes_needed(image: SystemImage, *, with_boot_files: bool) -> int:
    """What laying `image` into an empty system filesystem takes, conservatively."""
    sizes = [len(data) for _, data in image.files]
    sizes.append(len(image.release(None).to_json()))
    if with_boot_files:
        sizes += [len(image.kernel), len(image.initrd)]
    return sum(_cost(size) for size in sizes)


def esp_bytes_needed(image: SystemImage, slots: int, *, with_loader: bool) -> int:
    sizes = [len(image.kernel), len(image.initrd)] * slots
    if with_loader:
        sizes.append(len(systemd_boot_binary()))
    return sum(_cost(size) for size in sizes)


@dataclass(frozen=True)
class _Fit:
    what: str  # "system slot B", "the ESP"
    capacity: int  # bytes the filesystem can hold
    needed: int


def _ext4_capacity(partition_size: int) -> int:
    return int(partition_size * (1 - EXT4_OVERHEAD))


def _partition(found: Installation, role: PartitionRole) -> gpt.Partition:
    number = partition_number(found.layout, role)
    for part in found.partitions:
        if part.number == number:
            return part
    raise Refused(
        f"the disk has no partition {number} ({role.value})",
        hint="'engine-disk inspect DISK' shows what the disk holds",
    )


def _fits(
    plan: InstallPlan,
    image: SystemImage,
    layout: DiskLayout,
    disk_size: int,
    found: Installation | None,
) -> list[_Fit]:
    fits: list[_Fit] = []
    fresh = plan.mode in (InstallMode.FRESH, InstallMode.ERASE)
    if fresh and layout is DiskLayout.MBR:
        _, size = region_bounds(MBR_REGIONS[1], disk_size)
        fits.append(
            _Fit(
                "the system partition",
                _ext4_capacity(size),
                slot_bytes_needed(image, with_boot_files=True),
            )
        )
    elif fresh:
        by_role = {r.role: r for r in regions(layout).values()}
        for role, name in ((PartitionRole.SYSTEM_A, "A"), (PartitionRole.SYSTEM_B, "B")):
            _, size = region_bounds(by_role[role], disk_size)
            fits.append(
                _Fit(
                    f"system slot {name}",
                    _ext4_capacity(size),
                    slot_bytes_needed(image, with_boot_files=False),
                )
            )
        _, esp = region_bounds(ESP_REGION, disk_size)
        fits.append(
            _Fit(
                "the ESP",
                int(esp * (1 - VFAT_OVERHEAD)),
                esp_bytes_needed(image, 2, with_loader=True),
            )
        )
    elif found is not None and found.layout is DiskLayout.MBR and layout is DiskLayout.GPT_AB:
        # MBR to GPT: the new system goes into slot B's region, both kernels onto a new ESP.
        _, size = region_bounds(SLOT_B_REGION, disk_size)
        fits.append(
            _Fit(
                "system slot B",
                _ext4_capacity(size),
                slot_bytes_needed(image, with_boot_files=False),
            )
        )
        _, esp = region_bounds(ESP_REGION, disk_size)
        fits.append(
            _Fit(
                "the ESP",
                int(esp * (1 - VFAT_OVERHEAD)),
                esp_bytes_needed(image, 2, with_loader=True),
            )
        )
    elif found is not None and found.layout is DiskLayout.MBR:
        part = _partition(found, PartitionRole.SYSTEM_A)
        fits.append(
            _Fit(
                "the system partition",
                _ext4_capacity(part.size_bytes),
                slot_bytes_needed(image, with_boot_files=True),
            )
        )
    elif found is not None and found.active_slot is not None:
        new = found.active_slot.other
        part = _partition(found, PartitionRole.for_slot(new))
        fits.append(
            _Fit(
                f"system slot {new.value}",
                _ext4_capacity(part.size_bytes),
                slot_bytes_needed(image, with_boot_files=False),
            )
        )
    return fits


def check_fit(
    plan: InstallPlan,
    image: SystemImage,
    layout: DiskLayout,
    disk_size: int,
    found: Installation | None,
) -> None:
    """Refuse, before any write, a payload that does not fit where the run will put it."""
    for fit in _fits(plan, image, layout, disk_size, found):
        if fit.needed > fit.capacity:
            raise Refused(
                f"{plan.medium}: the system payload does not fit {fit.what} of {plan.target} "
                f"(needs about {human_size(fit.needed)}, it holds about "
                f"{human_size(fit.capacity)}); nothing was written",
                hint="the medium's payload is too large for an Engine disk; rebuild the "
                "medium with a smaller system tree",
            )


def _esp_free_bytes(target: Path, found: Installation) -> int:
    """Free bytes on the ESP, by mtools; a Refused when the ESP cannot be read."""
    esp = _partition(found, PartitionRole.ESP)
    free = EspReader(target, esp.start_bytes).free_bytes()
    if free is None:
        raise Refused(
            f"{target}: the ESP (partition {esp.number}) holds no readable FAT filesystem; "
            "the upgrade would fail while writing the boot files; nothing was written",
            hint="the disk's boot partition is damaged: erase and reinstall, or restore the "
            "disk from a backup",
        )
    return free


def _check_ext4(target: Path, found: Installation, role: PartitionRole) -> None:
    part = _partition(found, role)
    debugfs = require_tool("debugfs", "e2fsprogs")
    with plain_name(target) as name:  # a `?` in the name is e2fsprogs syntax
        proc = run(
            [debugfs, "-c", "-R", "stats", f"{name}?offset={part.start_bytes}"],
            check=False,
            timeout=60,
        )
    if proc.returncode != 0 or b"Filesystem volume name" not in (proc.stdout or b""):
        raise Refused(
            f"{target}: partition {part.number} ({role.value}) holds no readable ext4 "
            "filesystem; nothing was written",
            hint="the disk is damaged: erase and reinstall, or restore it from a backup",
        )


def check_readable(plan: InstallPlan, image: SystemImage, found: Installation | None) -> None:
    """Refuse, before any write, a run that would touch a partition it cannot read. Fresh
    installs and erases format every partition first, so only upgrades and repairs (which
    keep storage and the ESP) read anything."""
    if found is None or plan.mode not in (InstallMode.UPGRADE, InstallMode.REPAIR):
        return
    _check_ext4(plan.target, found, PartitionRole.STORAGE)
    if found.layout is not DiskLayout.GPT_AB:
        return
    free = _esp_free_bytes(plan.target, found)
    needed = esp_bytes_needed(image, 1, with_loader=plan.mode is InstallMode.REPAIR)
    if needed > free:
        raise Refused(
            f"{plan.target}: the ESP has {human_size(free)} free, the new kernel and initrd "
            f"need about {human_size(needed)}; nothing was written",
            hint="free space on the ESP (remove stray files from it), or erase and reinstall",
        )
