"""The on-disk formats of the MBR and the GPT: constants, the parsed structures and the
parsers from bytes (no I/O). Sector size is 512 bytes throughout.
"""

from __future__ import annotations

import os
import struct
import uuid
import zlib
from dataclasses import dataclass
from enum import StrEnum
from typing import BinaryIO

from enginekit.errors import UserInputError

SECTOR_SIZE = 512
GPT_SIGNATURE = b"EFI PART"
GPT_REVISION = 0x00010000
GPT_HEADER_SIZE = 92
GPT_ENTRY_SIZE = 128
GPT_ENTRY_COUNT = 128
MBR_SIGNATURE = b"\x55\xaa"
MBR_DISK_SIGNATURE_OFFSET = 440
MBR_TABLE_OFFSET = 446
MBR_PROTECTIVE_TYPE = 0xEE
MBR_EXTENDED_TYPES = frozenset({0x05, 0x0F, 0x85})
#: GPT attribute bit 2: firmware may boot this partition the legacy BIOS way.
ATTRIBUTE_LEGACY_BIOS_BOOTABLE = 1 << 2
#: Largest entry array we accept from a disk; real ones are 16 KiB, this bounds a hostile one.
MAX_ENTRY_ARRAY_BYTES = 1024 * 1024
MAX_LOGICAL_PARTITIONS = 128

# Partition type GUIDs we name (lower case, as everywhere in this module).
ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
LINUX_FS_TYPE = "0fc63daf-8483-4772-8e79-3d69d8477de4"
LINUX_SWAP_TYPE = "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"
BASIC_DATA_TYPE = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"
BIOS_BOOT_TYPE = "21686148-6449-6e6f-744e-656564454649"
UNUSED_TYPE = "00000000-0000-0000-0000-000000000000"

HEADER_STRUCT = struct.Struct("<8sIIIIQQQQ16sQIII")
ENTRY_STRUCT = struct.Struct("<16s16sQQQ72s")
MBR_ENTRY_STRUCT = struct.Struct("<B3sB3sII")

StrPath = str | os.PathLike[str]
Target = StrPath | BinaryIO


class InvalidPartitionTable(UserInputError):
    """The image cannot be read as a disk: missing, truncated, or its GPT is beyond repair."""

    default_hint = (
        "give the path of a readable disk image file; 'engine-disk inspect "
        "DISK' shows what it holds"
    )


class InvalidPartitionLayout(UserInputError):
    """`write_gpt()` was asked for a layout that cannot exist (overlap, out of the disk...)."""

    default_hint = (
        "the partitions asked for do not fit this disk; change the layout or the disk's size"
    )


class PartitionTableKind(StrEnum):
    GPT = "gpt"
    MBR = "mbr"
    NONE = "none"


class MbrMode(StrEnum):
    """What `write_gpt()` does with LBA 0."""

    #: One 0xee entry over the whole disk (boot code and disk signature are kept).
    PROTECTIVE = "protective"
    #: The given MBR entries plus an 0xee entry over the GPT structures (boot code kept):
    #: what a hybrid ISO needs so BIOS sees its MBR partitions and UEFI a valid GPT.
    HYBRID = "hybrid"
    #: Leave LBA 0 exactly as it is (it must already carry an 0xee entry).
    KEEP = "keep"


@dataclass(frozen=True)
class MbrEntry:
    """One of the four primary entries of an MBR (or an EBR entry, relative LBAs resolved)."""

    status: int
    type: int
    start_lba: int
    sectors: int

    @property
    def bootable(self) -> bool:
        return self.status == 0x80

    @property
    def empty(self) -> bool:
        return self.type == 0 and self.sectors == 0

    @property
    def end_lba(self) -> int:
        return self.start_lba + self.sectors - 1

    def to_bytes(self) -> bytes:
        # CHS fields are meaningless on modern disks; 0xfeffff ("beyond CHS") is what sgdisk,
        # sfdisk and xorriso write once LBAs exceed the CHS range, and is accepted everywhere.
        start_chs = _chs(self.start_lba)
        end_chs = _chs(self.end_lba) if self.sectors else b"\0\0\0"
        return MBR_ENTRY_STRUCT.pack(
            self.status, start_chs, self.type, end_chs, self.start_lba, self.sectors
        )


def _chs(lba: int) -> bytes:
    heads, sectors_per_track = 255, 63
    cylinder, rest = divmod(lba, heads * sectors_per_track)
    if cylinder > 1023:
        return b"\xfe\xff\xff"
    head, sector = divmod(rest, sectors_per_track)
    sector += 1
    return bytes([head, ((cylinder >> 2) & 0xC0) | sector, cylinder & 0xFF])


def protective_mbr_entry(
    disk_sectors: int, start_lba: int = 1, end_lba: int | None = None
) -> MbrEntry:
    """The 0xee entry of a protective MBR, covering [start_lba, end_lba] (default: to the end)."""
    last = disk_sectors - 1 if end_lba is None else end_lba
    return MbrEntry(0, MBR_PROTECTIVE_TYPE, start_lba, min(last - start_lba + 1, 0xFFFFFFFF))


@dataclass(frozen=True)
class Mbr:
    boot_code: bytes
    disk_signature: int
    entries: tuple[MbrEntry, ...]
    has_boot_signature: bool

    @property
    def protective_entries(self) -> tuple[int, ...]:
        """1-based slots holding an 0xee entry."""
        return tuple(i + 1 for i, e in enumerate(self.entries) if e.type == MBR_PROTECTIVE_TYPE)

    @property
    def is_hybrid(self) -> bool:
        """An 0xee entry next to other non-empty entries."""
        others = [e for e in self.entries if not e.empty and e.type != MBR_PROTECTIVE_TYPE]
        return bool(self.protective_entries) and bool(others)


@dataclass(frozen=True)
class GptHeader:
    revision: int
    header_size: int
    header_crc: int
    my_lba: int
    alternate_lba: int
    first_usable_lba: int
    last_usable_lba: int
    disk_guid: str
    entries_lba: int
    entry_count: int
    entry_size: int
    entries_crc: int
    #: The CRC32 computed over the header as read (compare with header_crc).
    computed_crc: int

    @property
    def crc_ok(self) -> bool:
        return self.header_crc == self.computed_crc

    @property
    def entry_array_sectors(self) -> int:
        return -(-self.entry_count * self.entry_size // SECTOR_SIZE)


@dataclass(frozen=True)
class Partition:
    """A partition as found on disk. GPT fills the GUID fields, MBR the `mbr_type`."""

    number: int
    start_lba: int
    end_lba: int
    type_guid: str | None = None
    mbr_type: int | None = None
    part_guid: str | None = None
    name: str = ""
    attributes: int = 0
    bootable: bool = False

    @property
    def size_lba(self) -> int:
        return self.end_lba - self.start_lba + 1

    @property
    def start_bytes(self) -> int:
        return self.start_lba * SECTOR_SIZE

    @property
    def size_bytes(self) -> int:
        return self.size_lba * SECTOR_SIZE

    @property
    def end_bytes(self) -> int:
        """The byte just past the partition."""
        return (self.end_lba + 1) * SECTOR_SIZE

    @property
    def type(self) -> str:
        """The GPT type GUID, or the MBR type as two hex digits (`83`, `ef`)."""
        if self.type_guid is not None:
            return self.type_guid
        return f"{self.mbr_type or 0:02x}"


@dataclass(frozen=True)
class PartitionTable:
    kind: PartitionTableKind
    #: GPT disk GUID in lower case, `mbr-%08x` of the MBR disk signature, or "" for none.
    disk_id: str
    disk_size_bytes: int
    partitions: tuple[Partition, ...] = ()
    mbr: Mbr | None = None
    #: The GPT header the partitions were taken from (the backup if the primary is damaged).
    header: GptHeader | None = None
    used_backup: bool = False
    #: What `validate_gpt()` finds for a GPT; empty when the table is sound.
    problems: tuple[str, ...] = ()

    @property
    def disk_sectors(self) -> int:
        return self.disk_size_bytes // SECTOR_SIZE

    def by_name(self, name: str) -> Partition | None:
        """The first GPT partition with this name (PARTLABEL), if any."""
        return next((p for p in self.partitions if p.name == name), None)

    def by_number(self, number: int) -> Partition | None:
        return next((p for p in self.partitions if p.number == number), None)


@dataclass(frozen=True)
class NewPartition:
    """A partition for `write_gpt()`. LBAs are inclusive; `number` defaults to list order."""

    start_lba: int
    end_lba: int
    type_guid: str = LINUX_FS_TYPE
    name: str = ""
    part_guid: str | None = None
    attributes: int = 0
    number: int | None = None

    @classmethod
    def sized(
        cls, start_lba: int, size_bytes: int, type_guid: str = LINUX_FS_TYPE, name: str = ""
    ) -> NewPartition:
        sectors = -(-size_bytes // SECTOR_SIZE)
        return cls(start_lba, start_lba + sectors - 1, type_guid, name)


def guid(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=raw))


def guid_bytes(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


def parse_mbr(sector: bytes) -> Mbr:
    entries = tuple(
        _parse_mbr_entry(sector[MBR_TABLE_OFFSET + 16 * i : MBR_TABLE_OFFSET + 16 * (i + 1)])
        for i in range(4)
    )
    return Mbr(
        boot_code=sector[:MBR_DISK_SIGNATURE_OFFSET],
        disk_signature=int.from_bytes(sector[440:444], "little"),
        entries=entries,
        has_boot_signature=sector[510:512] == MBR_SIGNATURE,
    )


def _parse_mbr_entry(raw: bytes) -> MbrEntry:
    status, _, ptype, _, start, sectors = MBR_ENTRY_STRUCT.unpack(raw)
    return MbrEntry(status, ptype, start, sectors)


def parse_gpt_header(sector: bytes) -> GptHeader | None:
    """The header in this sector, or None if it does not start with 'EFI PART'."""
    if sector[:8] != GPT_SIGNATURE:
        return None
    # HEADER_STRUCT's fields are GptHeader's, in order, around the signature and a reserved word.
    raw = HEADER_STRUCT.unpack_from(sector)
    header_size = raw[2]
    crc_size = header_size if GPT_HEADER_SIZE <= header_size <= SECTOR_SIZE else GPT_HEADER_SIZE
    blanked = sector[:16] + b"\0\0\0\0" + sector[20:crc_size]
    fields = (*raw[1:4], *raw[5:9], guid(raw[9]), *raw[10:], zlib.crc32(blanked))
    return GptHeader(*fields)


def pack_gpt_header(header: GptHeader) -> bytes:
    """The sector holding `header`, its CRC computed (`header_crc` is ignored)."""

    def pack(crc: int) -> bytes:
        return HEADER_STRUCT.pack(
            GPT_SIGNATURE,
            header.revision,
            header.header_size,
            crc,
            0,
            header.my_lba,
            header.alternate_lba,
            header.first_usable_lba,
            header.last_usable_lba,
            guid_bytes(header.disk_guid),
            header.entries_lba,
            header.entry_count,
            header.entry_size,
            header.entries_crc,
        )

    return pack(zlib.crc32(pack(0)[: header.header_size])).ljust(SECTOR_SIZE, b"\0")


def parse_gpt_entries(array: bytes, entry_size: int) -> tuple[Partition, ...]:
    partitions = []
    for index in range(len(array) // entry_size):
        raw = array[index * entry_size : index * entry_size + GPT_ENTRY_SIZE]
        type_guid, part_guid, first, last, attributes, name = ENTRY_STRUCT.unpack(raw)
        if type_guid == b"\0" * 16:
            continue
        partitions.append(
            Partition(
                number=index + 1,
                start_lba=first,
                end_lba=last,
                type_guid=guid(type_guid),
                part_guid=guid(part_guid),
                name=name.decode("utf-16-le", "replace").split("\0", 1)[0],
                attributes=attributes,
                bootable=bool(attributes & ATTRIBUTE_LEGACY_BIOS_BOOTABLE),
            )
        )
    return tuple(partitions)
