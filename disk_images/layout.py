"""The on-disk layout of an Engine installation (DESIGN.md, "On-disk layout") as data.

Region offsets are fixed so a 4.0.0 MBR disk can become a 4.5.0 GPT disk without moving
data: the ESP, slot A, slot B and storage always start at the same MiB. The installer, the
probe and the session all take partition numbers, labels and file paths from here, never
from literals of their own.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from disk_images.image import MIB, PartitionSpec, PartitionType, TableType
from enginekit import gpt
from enginekit.errors import UserInputError
from enginekit.versions import DiskLayout

MIN_DISK_SIZE = 512 * MIB


class Slot(enum.StrEnum):
    """A system slot. MBR installations have only slot A (the one system partition)."""

    A = "A"
    B = "B"

    @property
    def other(self) -> Slot:
        return Slot.B if self is Slot.A else Slot.A

    @property
    def letter(self) -> str:
        """ "a" or "b", as in file names."""
        return self.value.lower()


class PartitionRole(enum.StrEnum):
    ESP = "esp"
    SYSTEM_A = "slot-a"
    SYSTEM_B = "slot-b"
    STORAGE = "storage"

    @classmethod
    def for_slot(cls, slot: Slot) -> PartitionRole:
        return cls.SYSTEM_A if slot is Slot.A else cls.SYSTEM_B


class FsType(enum.StrEnum):
    EXT4 = "ext4"
    VFAT = "vfat"


@dataclass(frozen=True)
class Region:
    """A fixed region of the disk and the partition an Engine layout puts there."""

    role: PartitionRole
    start_mib: int
    end_mib: int | None  # None: up to the last MiB of the disk (exclusive)
    partlabel: str | None  # GPT PARTLABEL (None on MBR)
    fs_label: str
    fs_type: FsType
    partition_type: str


ESP_REGION = Region(
    PartitionRole.ESP, 1, 65, "engine-esp", "ENGINE-ESP", FsType.VFAT, PartitionType.ESP
)
SLOT_A_REGION = Region(
    PartitionRole.SYSTEM_A, 65, 193, "engine-system-a", "engine-sys-a", FsType.EXT4, "L"
)
SLOT_B_REGION = Region(
    PartitionRole.SYSTEM_B, 193, 321, "engine-system-b", "engine-sys-b", FsType.EXT4, "L"
)
STORAGE_REGION = Region(
    PartitionRole.STORAGE, 321, None, "engine-storage", "engine-storage", FsType.EXT4, "L"
)

# Partition numbers per layout: GPT keeps the regions in disk order; MBR has system + storage.
GPT_REGIONS: dict[int, Region] = {
    1: ESP_REGION,
    2: SLOT_A_REGION,
    3: SLOT_B_REGION,
    4: STORAGE_REGION,
}
MBR_REGIONS: dict[int, Region] = {1: SLOT_A_REGION, 2: STORAGE_REGION}


def regions(layout: DiskLayout) -> dict[int, Region]:
    """Partition number -> region for `layout`."""
    return dict(GPT_REGIONS if layout is DiskLayout.GPT_AB else MBR_REGIONS)


def partition_number(layout: DiskLayout, role: PartitionRole) -> int:
    for number, region in regions(layout).items():
        if region.role is role:
            return number
    raise UserInputError(
        f"a {layout.value} installation has no {role.value} partition",
        hint="this layout has no such partition; see DESIGN.md for each layout's partitions",
    )


def table_type(layout: DiskLayout) -> TableType:
    return TableType.GPT if layout is DiskLayout.GPT_AB else TableType.MBR


def region_bounds(region: Region, disk_size: int) -> tuple[int, int]:
    """(start, size) in bytes of `region` on a disk of `disk_size` bytes."""
    start = region.start_mib * MIB
    end = (region.end_mib * MIB) if region.end_mib is not None else (disk_size // MIB - 1) * MIB
    return start, end - start


def engine_partitions(layout: DiskLayout, disk_size: int) -> tuple[PartitionSpec, ...]:
    """The partitions of an Engine disk of `disk_size` bytes, ready for `partition_image`."""
    if disk_size < MIN_DISK_SIZE:
        raise UserInputError(
            f"an Engine disk needs at least {MIN_DISK_SIZE // MIB} MiB "
            f"(this one has {disk_size // MIB} MiB)",
            hint="create a bigger disk image (e.g. engine-disk create DISK.img --size 8G)",
        )
    specs = []
    for region in regions(layout).values():
        start, size = region_bounds(region, disk_size)
        specs.append(
            PartitionSpec(
                size=size,
                start=start,
                type=region.partition_type,
                name=region.partlabel if layout is DiskLayout.GPT_AB else None,
                bootable=layout is DiskLayout.MBR and region.role is PartitionRole.SYSTEM_A,
            )
        )
    return tuple(specs)


# --- files inside the partitions (paths are absolute within their partition) ---------------

RELEASE_PATH = "/engine-release"  # on a system slot
ENGINE_DIR = "/engine"  # on storage
CONFIG_PATH = "/engine/config.json"  # on storage
STATE_PATH = "/engine/state.json"  # on storage
VMS_DIR = "/vms"  # on storage
MBR_BOOT_DIR = "/boot"  # on the MBR system partition: vmlinuz, initrd.img, extlinux/
MBR_EXTLINUX_CONF = "/boot/extlinux/extlinux.conf"

# on the ESP
ESP_BOOTLOADER = "/EFI/BOOT/BOOTX64.EFI"
ESP_LOADER_CONF = "/loader/loader.conf"
ESP_ENTRIES_DIR = "/loader/entries"

VM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def vm_dir(name: str) -> str:
    return f"{VMS_DIR}/{name}"


def vm_json_path(name: str) -> str:
    return f"{VMS_DIR}/{name}/vm.json"


def vm_disk_path(name: str) -> str:
    return f"{VMS_DIR}/{name}/disk.img"


def esp_slot_dir(slot: Slot) -> str:
    """Where the ESP keeps a slot's kernel and initrd: /engine/a or /engine/b."""
    return f"/engine/{slot.letter}"


@dataclass(frozen=True)
class BootEntryName:
    """A systemd-boot entry file name: engine-<generation>-<slot>[+<left>[-<done>]].conf."""

    generation: int
    slot: Slot
    tries_left: int | None = None
    tries_done: int | None = None

    _PATTERN = re.compile(r"^engine-(\d+)-([ab])(?:\+(\d+)(?:-(\d+))?)?\.conf$")

    @property
    def file_name(self) -> str:
        counter = ""
        if self.tries_left is not None:
            counter = f"+{self.tries_left}"
            if self.tries_done is not None:
                counter += f"-{self.tries_done}"
        return f"engine-{self.generation}-{self.slot.letter}{counter}.conf"

    @property
    def path(self) -> str:
        return f"{ESP_ENTRIES_DIR}/{self.file_name}"

    @classmethod
    def parse(cls, file_name: str) -> BootEntryName | None:
        """The entry named `file_name`, or None if it is not one of ours."""
        match = cls._PATTERN.match(file_name)
        if not match:
            return None
        generation, slot, left, done = match.groups()
        return cls(
            int(generation),
            Slot(slot.upper()),
            int(left) if left is not None else None,
            int(done) if done is not None else None,
        )


def match_layout(table: gpt.PartitionTable) -> DiskLayout | None:
    """Which Engine layout `table` is, or None if it is not an Engine partition table.

    GPT: partitions 1-4 with the Engine PARTLABELs at the fixed region starts. MBR: partition
    1 at slot A's start and partition 2 at storage's start, both Linux (0x83).
    """
    numbered = {p.number: p for p in table.partitions}
    if table.kind is gpt.PartitionTableKind.GPT:
        expected = GPT_REGIONS
        for number, region in expected.items():
            part = numbered.get(number)
            if part is None or part.name != region.partlabel:
                return None
            if part.start_bytes != region.start_mib * MIB:
                return None
        return DiskLayout.GPT_AB
    for number, region in MBR_REGIONS.items():
        part = numbered.get(number)
        if part is None or part.start_bytes != region.start_mib * MIB or part.type != "83":
            return None
    return DiskLayout.MBR
