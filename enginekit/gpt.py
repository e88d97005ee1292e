"""Read, validate and write MBR and GPT partition tables on disk images, in pure Python.

`read_partition_table()` gives the partitions and the disk id of an image (falling back to the
backup GPT like the kernel does), `validate_gpt()` lists every structural problem the way
`sgdisk -v` would find them, and `write_gpt()` lays down a primary and backup GPT with correct
CRCs, optionally keeping an existing (isohybrid) MBR so a hybrid ISO carries a valid GPT.
Sector size is 512 bytes throughout; only the stdlib is used.
"""

from __future__ import annotations

import io
import itertools
import os
import stat
import struct
import uuid
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
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
_MAX_ENTRY_ARRAY_BYTES = 1024 * 1024
_MAX_LOGICAL_PARTITIONS = 128

# Partition type GUIDs we name (lower case, as everywhere in this module).
ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
LINUX_FS_TYPE = "0fc63daf-8483-4772-8e79-3d69d8477de4"
LINUX_SWAP_TYPE = "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"
BASIC_DATA_TYPE = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"
BIOS_BOOT_TYPE = "21686148-6449-6e6f-744e-656564454649"
UNUSED_TYPE = "00000000-0000-0000-0000-000000000000"

_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
_ENTRY = struct.Struct("<16s16sQQQ72s")
_MBR_ENTRY = struct.Struct("<B3sB3sII")

StrPath = str | os.PathLike[str]
Target = StrPath | BinaryIO


class InvalidPartitionTable(UserInputError):
    """The image cannot be read as a disk: missing, truncated, or its GPT is beyond repair."""


class InvalidPartitionLayout(UserInputError):
    """`write_gpt()` was asked for a layout that cannot exist (overlap, out of the disk...)."""


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


# --- data -----------------------------------------------------------------------------------


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
        return _MBR_ENTRY.pack(
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


# --- low-level access -----------------------------------------------------------------------


class _Disk:
    """Sector reads from a path or an open file, with the disk's name for messages."""

    def __init__(self, handle: BinaryIO, name: str) -> None:
        self.handle = handle
        self.name = name
        # seek() also sizes block devices, where st_size is 0.
        self.size = handle.seek(0, os.SEEK_END)
        self.sectors = self.size // SECTOR_SIZE

    def read(self, lba: int, count: int = 1) -> bytes | None:
        """`count` sectors from `lba`, or None if the disk does not hold them all."""
        if lba < 0 or count < 0 or lba + count > self.sectors:
            return None
        self.handle.seek(lba * SECTOR_SIZE)
        data = self.handle.read(count * SECTOR_SIZE)
        return data if len(data) == count * SECTOR_SIZE else None


@contextmanager
def _open_disk(target: Target) -> Iterator[_Disk]:
    if isinstance(target, str | os.PathLike):
        name = os.fspath(target)
        try:
            if stat.S_ISDIR(os.stat(name).st_mode):
                raise InvalidPartitionTable(f"{name}: is a directory, not a disk image")
            handle = open(name, "rb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError as exc:
            raise InvalidPartitionTable(f"{name}: no such file") from exc
        except PermissionError as exc:
            raise InvalidPartitionTable(f"{name}: permission denied") from exc
        except OSError as exc:
            raise InvalidPartitionTable(f"{name}: cannot open: {exc.strerror or exc}") from exc
        with handle:
            yield _Disk(handle, name)
    else:
        yield _Disk(target, str(getattr(target, "name", "<disk>")))


def _guid(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=raw))


def _guid_bytes(text: str) -> bytes:
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
    status, _, ptype, _, start, sectors = _MBR_ENTRY.unpack(raw)
    return MbrEntry(status, ptype, start, sectors)


def parse_gpt_header(sector: bytes) -> GptHeader | None:
    """The header in this sector, or None if it does not start with 'EFI PART'."""
    if sector[:8] != GPT_SIGNATURE:
        return None
    (
        _,
        revision,
        header_size,
        header_crc,
        _reserved,
        my_lba,
        alternate_lba,
        first_usable,
        last_usable,
        disk_guid,
        entries_lba,
        entry_count,
        entry_size,
        entries_crc,
    ) = _HEADER.unpack_from(sector)
    crc_size = header_size if GPT_HEADER_SIZE <= header_size <= SECTOR_SIZE else GPT_HEADER_SIZE
    blanked = sector[:16] + b"\0\0\0\0" + sector[20:crc_size]
    return GptHeader(
        revision=revision,
        header_size=header_size,
        header_crc=header_crc,
        my_lba=my_lba,
        alternate_lba=alternate_lba,
        first_usable_lba=first_usable,
        last_usable_lba=last_usable,
        disk_guid=_guid(disk_guid),
        entries_lba=entries_lba,
        entry_count=entry_count,
        entry_size=entry_size,
        entries_crc=entries_crc,
        computed_crc=zlib.crc32(blanked),
    )


def parse_gpt_entries(array: bytes, entry_size: int) -> tuple[Partition, ...]:
    partitions = []
    for index in range(len(array) // entry_size):
        raw = array[index * entry_size : index * entry_size + GPT_ENTRY_SIZE]
        type_guid, part_guid, first, last, attributes, name = _ENTRY.unpack(raw)
        if type_guid == b"\0" * 16:
            continue
        partitions.append(
            Partition(
                number=index + 1,
                start_lba=first,
                end_lba=last,
                type_guid=_guid(type_guid),
                part_guid=_guid(part_guid),
                name=name.decode("utf-16-le", "replace").split("\0", 1)[0],
                attributes=attributes,
                bootable=bool(attributes & ATTRIBUTE_LEGACY_BIOS_BOOTABLE),
            )
        )
    return tuple(partitions)


# --- GPT inspection: one pass that both reads and validates ---------------------------------


@dataclass
class _GptCopy:
    """One of the two GPT copies as found on disk, with what is wrong with it."""

    label: str
    lba: int
    header: GptHeader | None = None
    entries: bytes | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """Sound enough to take partitions from (signature, CRCs, readable array)."""
        return (
            self.header is not None
            and self.header.crc_ok
            and self.entries is not None
            and zlib.crc32(self.entries) == self.header.entries_crc
        )


def _read_copy(disk: _Disk, label: str, lba: int, expect_my_lba: int) -> _GptCopy:
    copy = _GptCopy(label, lba)
    sector = disk.read(lba)
    if sector is None:
        copy.problems.append(f"{label} GPT header: LBA {lba} is beyond the end of the disk")
        return copy
    header = parse_gpt_header(sector)
    if header is None:
        copy.problems.append(f"{label} GPT header: no 'EFI PART' signature at LBA {lba}")
        return copy
    copy.header = header
    if not header.crc_ok:
        copy.problems.append(
            f"{label} GPT header: CRC mismatch (stored 0x{header.header_crc:08x}, "
            f"computed 0x{header.computed_crc:08x})"
        )
    if not GPT_HEADER_SIZE <= header.header_size <= SECTOR_SIZE:
        copy.problems.append(f"{label} GPT header: invalid header size {header.header_size}")
    if header.revision != GPT_REVISION:
        copy.problems.append(f"{label} GPT header: unknown revision 0x{header.revision:08x}")
    if header.my_lba != expect_my_lba:
        copy.problems.append(
            f"{label} GPT header: says it is at LBA {header.my_lba}, but it is at LBA {lba}"
        )
    if header.entry_size < GPT_ENTRY_SIZE or header.entry_size % 8:
        copy.problems.append(
            f"{label} GPT header: invalid partition entry size {header.entry_size}"
        )
        return copy
    array_bytes = header.entry_count * header.entry_size
    if array_bytes > _MAX_ENTRY_ARRAY_BYTES:
        copy.problems.append(
            f"{label} GPT header: implausible partition entry array of {header.entry_count} "
            f"entries of {header.entry_size} bytes"
        )
        return copy
    data = disk.read(header.entries_lba, header.entry_array_sectors)
    if data is None:
        copy.problems.append(
            f"{label} GPT partition entry array: LBA {header.entries_lba}+"
            f"{header.entry_array_sectors} is beyond the end of the disk"
        )
        return copy
    copy.entries = data[:array_bytes]
    computed = zlib.crc32(copy.entries)
    if computed != header.entries_crc:
        copy.problems.append(
            f"{label} GPT partition entry array: CRC mismatch (stored "
            f"0x{header.entries_crc:08x}, computed 0x{computed:08x})"
        )
    return copy


@dataclass
class _GptInspection:
    mbr: Mbr | None
    primary: _GptCopy
    backup: _GptCopy
    problems: list[str]
    partitions: tuple[Partition, ...] = ()

    @property
    def chosen(self) -> _GptCopy | None:
        if self.primary.usable:
            return self.primary
        if self.backup.usable:
            return self.backup
        return None


def _inspect_gpt(disk: _Disk) -> _GptInspection:
    problems: list[str] = []
    last_lba = disk.sectors - 1
    lba0 = disk.read(0)
    mbr = parse_mbr(lba0) if lba0 is not None else None

    primary = _read_copy(disk, "primary", 1, 1)
    # The backup lives where the primary says; if the primary cannot be trusted, at the
    # disk's last LBA (where it must be anyway).
    backup_lba = last_lba
    if primary.header is not None and primary.header.crc_ok:
        backup_lba = primary.header.alternate_lba
        if backup_lba != last_lba:
            problems.append(
                f"backup GPT header is not at the last LBA: the primary header puts it at LBA "
                f"{backup_lba}, the disk's last LBA is {last_lba}"
            )
    backup = _read_copy(disk, "backup", backup_lba, backup_lba)
    problems.extend(primary.problems)
    problems.extend(backup.problems)
    if backup.header is not None and backup.header.alternate_lba != 1:
        problems.append(
            f"backup GPT header: points to the primary at LBA {backup.header.alternate_lba}, not 1"
        )
    # Comparing copies only means something once each copy checks out on its own;
    # otherwise every corrupted byte would be reported twice.
    if primary.usable and backup.usable:
        problems.extend(_compare_copies(primary, backup))
    for copy in (primary, backup):
        if copy.header is not None and copy.header.crc_ok:
            problems.extend(_layout_problems(copy, disk.sectors))
    inspection = _GptInspection(mbr, primary, backup, problems)
    chosen = inspection.chosen
    if chosen is not None and chosen.header is not None and chosen.entries is not None:
        inspection.partitions = parse_gpt_entries(chosen.entries, chosen.header.entry_size)
        problems.extend(_partition_problems(inspection.partitions, chosen.header))
    # MBR problems first: that is where a reader of the disk starts.
    problems[:0] = _mbr_problems(mbr, disk.sectors, inspection.partitions)
    return inspection


def _hybrid_mismatches(mbr: Mbr, partitions: Sequence[Partition]) -> list[str]:
    """In a hybrid MBR every entry but the 0xee one must describe a GPT partition exactly
    (else the two tables disagree about the disk). Entries starting at LBA 0 are exempt, as
    in sgdisk: that is the isohybrid "whole image" entry, which no GPT partition can match."""
    if not mbr.is_hybrid:
        return []
    spans = {(p.start_lba, p.end_lba) for p in partitions}
    problems = []
    for slot, entry in enumerate(mbr.entries, start=1):
        if entry.empty or entry.type == MBR_PROTECTIVE_TYPE or entry.start_lba == 0:
            continue
        if (entry.start_lba, entry.end_lba) not in spans:
            problems.append(
                f"hybrid MBR partition {slot} (type 0x{entry.type:02x}, LBA "
                f"{entry.start_lba}-{entry.end_lba}) has no matching GPT partition"
            )
    return problems


def _mbr_problems(mbr: Mbr | None, disk_sectors: int, partitions: Sequence[Partition]) -> list[str]:
    if mbr is None or not mbr.has_boot_signature:
        return ["protective MBR missing: no 0x55aa boot signature at LBA 0"]
    problems = []
    protective = mbr.protective_entries
    if not protective:
        problems.append("protective MBR missing: no partition of type 0xee in the MBR")
    for slot in protective:
        entry = mbr.entries[slot - 1]
        if entry.start_lba != 1:
            problems.append(
                f"protective MBR: the 0xee partition (entry {slot}) starts at LBA "
                f"{entry.start_lba}, not 1"
            )
    problems.extend(_hybrid_mismatches(mbr, partitions))
    used = [(i + 1, e) for i, e in enumerate(mbr.entries) if not e.empty]
    for slot, entry in used:
        if entry.type != MBR_PROTECTIVE_TYPE and entry.start_lba + entry.sectors > disk_sectors:
            problems.append(f"MBR partition {slot} extends beyond the end of the disk")
    for index, (slot_a, a) in enumerate(used):
        for slot_b, b in used[index + 1 :]:
            if a.sectors and b.sectors and a.start_lba <= b.end_lba and b.start_lba <= a.end_lba:
                problems.append(f"MBR partitions {slot_a} and {slot_b} overlap")
    return problems


def _compare_copies(primary: _GptCopy, backup: _GptCopy) -> list[str]:
    assert primary.header is not None
    assert backup.header is not None
    p, b = primary.header, backup.header
    problems = []
    for what, mine, theirs in (
        ("disk GUID", p.disk_guid, b.disk_guid),
        ("first usable LBA", p.first_usable_lba, b.first_usable_lba),
        ("last usable LBA", p.last_usable_lba, b.last_usable_lba),
        ("number of partition entries", p.entry_count, b.entry_count),
        ("partition entry size", p.entry_size, b.entry_size),
    ):
        if mine != theirs:
            problems.append(
                f"primary and backup GPT headers disagree on the {what} ({mine} vs {theirs})"
            )
    if primary.entries is not None and backup.entries is not None:
        if primary.entries != backup.entries:
            problems.append("primary and backup GPT partition entry arrays differ")
    return problems


def _layout_problems(copy: _GptCopy, disk_sectors: int) -> list[str]:
    header = copy.header
    assert header is not None
    label = copy.label
    problems = []
    array_first = header.entries_lba
    array_last = header.entries_lba + header.entry_array_sectors - 1
    last_lba = disk_sectors - 1
    if header.first_usable_lba > header.last_usable_lba + 1:
        problems.append(
            f"{label} GPT header: first usable LBA {header.first_usable_lba} is after the "
            f"last usable LBA {header.last_usable_lba}"
        )
    if header.last_usable_lba >= last_lba:
        problems.append(
            f"{label} GPT header: last usable LBA {header.last_usable_lba} is at or beyond "
            f"the disk's last LBA {last_lba}"
        )
    if label == "primary":
        if array_first <= 1:
            problems.append(
                f"primary GPT partition entry array at LBA {array_first} overlaps the MBR or header"
            )
        if array_last >= header.first_usable_lba:
            problems.append(
                f"primary GPT partition entry array (LBA {array_first}-{array_last}) overlaps "
                f"the usable LBAs from {header.first_usable_lba}"
            )
    else:
        if array_first <= header.last_usable_lba:
            problems.append(
                f"backup GPT partition entry array (LBA {array_first}-{array_last}) overlaps "
                f"the usable LBAs up to {header.last_usable_lba}"
            )
        if array_last >= copy.lba:
            problems.append(
                f"backup GPT partition entry array (LBA {array_first}-{array_last}) overlaps "
                f"the backup header at LBA {copy.lba}"
            )
    return problems


def _partition_problems(partitions: Sequence[Partition], header: GptHeader) -> list[str]:
    problems = []
    first, last = header.first_usable_lba, header.last_usable_lba
    for part in partitions:
        if part.end_lba < part.start_lba:
            problems.append(
                f"partition {part.number}: ends at LBA {part.end_lba}, before its start "
                f"at LBA {part.start_lba}"
            )
        elif part.start_lba < first or part.end_lba > last:
            problems.append(
                f"partition {part.number}: LBA {part.start_lba}-{part.end_lba} is outside the "
                f"usable LBAs {first}-{last}"
            )
    ordered = sorted(partitions, key=lambda p: (p.start_lba, p.number))
    for index, a in enumerate(ordered):
        for b in ordered[index + 1 :]:
            if b.start_lba > a.end_lba:
                break
            if a.end_lba >= a.start_lba and b.end_lba >= b.start_lba:
                low, high = sorted((a.number, b.number))
                problems.append(f"partitions {low} and {high} overlap")
    seen: dict[str, int] = {}
    for part in partitions:
        assert part.part_guid is not None
        if part.part_guid in seen:
            problems.append(
                f"partitions {seen[part.part_guid]} and {part.number} have the same unique GUID"
            )
        seen.setdefault(part.part_guid, part.number)
    return problems


# --- MBR partitions -------------------------------------------------------------------------


def _is_filesystem_boot_sector(sector: bytes) -> bool:
    """A FAT, exFAT or NTFS boot sector: a jump, a sane sector size, and the file system name
    where these formats put it."""
    if sector[0] not in (0xEB, 0xE9):
        return False
    if int.from_bytes(sector[11:13], "little") not in (512, 1024, 2048, 4096):
        return False
    return sector[3:11] in (b"NTFS    ", b"EXFAT   ") or b"FAT" in sector[54:62] + sector[82:90]


def _looks_like_mbr(mbr: Mbr, sector: bytes) -> bool:
    """A 0x55aa signature alone also ends FAT and NTFS boot sectors. Their "partition entries"
    are boot code, which rarely has valid status bytes in all four slots; and a whole-disk file
    system without partitions is a file system, not an empty MBR (sfdisk would call it an empty
    dos label; blkid, like us, a file system)."""
    if not mbr.has_boot_signature or any(e.status not in (0x00, 0x80) for e in mbr.entries):
        return False
    return not (_is_filesystem_boot_sector(sector) and all(e.empty for e in mbr.entries))


def _mbr_partitions(disk: _Disk, mbr: Mbr) -> tuple[Partition, ...]:
    partitions = []
    for slot, entry in enumerate(mbr.entries, start=1):
        if entry.type == 0 or entry.sectors == 0:
            continue
        partitions.append(_mbr_partition(slot, entry))
        if entry.type in MBR_EXTENDED_TYPES:
            partitions.extend(_logical_partitions(disk, entry.start_lba))
    return tuple(partitions)


def _mbr_partition(number: int, entry: MbrEntry) -> Partition:
    return Partition(
        number=number,
        start_lba=entry.start_lba,
        end_lba=entry.end_lba,
        mbr_type=entry.type,
        bootable=entry.bootable,
    )


def _logical_partitions(disk: _Disk, extended_start: int) -> list[Partition]:
    """Walk the EBR chain; each EBR's second entry points to the next, relative to the
    extended partition. Bounded, so a looping chain cannot hang us."""
    found: list[Partition] = []
    ebr_lba = extended_start
    seen: set[int] = set()
    while len(found) < _MAX_LOGICAL_PARTITIONS and ebr_lba not in seen:
        seen.add(ebr_lba)
        sector = disk.read(ebr_lba)
        if sector is None or sector[510:512] != MBR_SIGNATURE:
            break
        ebr = parse_mbr(sector)
        logical, link = ebr.entries[0], ebr.entries[1]
        if logical.type and logical.sectors:
            resolved = MbrEntry(
                logical.status, logical.type, ebr_lba + logical.start_lba, logical.sectors
            )
            found.append(_mbr_partition(5 + len(found), resolved))
        if link.type not in MBR_EXTENDED_TYPES or not link.sectors:
            break
        ebr_lba = extended_start + link.start_lba
    return found


# --- public reading API ---------------------------------------------------------------------


def read_partition_table(target: Target) -> PartitionTable:
    """The partition table of a disk image (or device, or open binary file).

    A GPT whose primary copy is damaged is read from its backup, as the kernel does;
    `problems` then says what is wrong. Raises InvalidPartitionTable when the file cannot be
    read as a disk at all (missing, a directory, shorter than a sector) or when both GPT
    copies are damaged.
    """
    with _open_disk(target) as disk:
        if disk.sectors == 0:
            raise InvalidPartitionTable(
                f"{disk.name}: too small to be a disk image ({disk.size} bytes, less than "
                f"one {SECTOR_SIZE}-byte sector)",
                hint="the image is empty or truncated",
            )
        lba0 = disk.read(0)
        assert lba0 is not None
        mbr = parse_mbr(lba0)
        lba1 = disk.read(1)
        has_gpt_header = lba1 is not None and lba1[:8] == GPT_SIGNATURE
        is_mbr = _looks_like_mbr(mbr, lba0)
        used_entries = [e for e in mbr.entries if not e.empty] if is_mbr else []
        # Like the kernel and libfdisk: an 0xee entry means GPT; an MBR with partitions
        # but no 0xee entry wins over a stale GPT header left behind at LBA 1; a GPT header
        # without any MBR is still read (validate_gpt reports the missing protective MBR).
        if is_mbr and mbr.protective_entries:
            return _read_gpt(disk)
        if used_entries or (is_mbr and not has_gpt_header):
            return PartitionTable(
                kind=PartitionTableKind.MBR,
                disk_id=f"mbr-{mbr.disk_signature:08x}",
                disk_size_bytes=disk.size,
                partitions=_mbr_partitions(disk, mbr),
                mbr=mbr,
            )
        if has_gpt_header:
            return _read_gpt(disk)
        return PartitionTable(PartitionTableKind.NONE, "", disk.size)


def _read_gpt(disk: _Disk) -> PartitionTable:
    inspection = _inspect_gpt(disk)
    chosen = inspection.chosen
    if chosen is None or chosen.header is None or chosen.entries is None:
        found = "; ".join(inspection.primary.problems + inspection.backup.problems)
        raise InvalidPartitionTable(
            f"{disk.name}: damaged GPT, neither copy is usable: {found}",
            hint="the image is corrupt or truncated; repair it with gdisk or recreate it",
        )
    return PartitionTable(
        kind=PartitionTableKind.GPT,
        disk_id=chosen.header.disk_guid,
        disk_size_bytes=disk.size,
        partitions=inspection.partitions,
        mbr=inspection.mbr,
        header=chosen.header,
        used_backup=chosen is not inspection.primary,
        problems=tuple(inspection.problems),
    )


def validate_gpt(target: Target) -> list[str]:
    """Every problem found in the GPT of this disk; an empty list means it is valid.

    Checks the protective (or hybrid) MBR, both headers (signature, CRC, where they say they
    are), both entry arrays (CRC, placement), that the copies agree, that the backup sits at the
    last LBA, and that partitions lie inside the usable LBAs without overlapping.
    """
    with _open_disk(target) as disk:
        if disk.sectors < 3:
            raise InvalidPartitionTable(
                f"{disk.name}: too small to hold a GPT ({disk.size} bytes)",
                hint="the image is empty or truncated",
            )
        return _inspect_gpt(disk).problems


# --- writing --------------------------------------------------------------------------------


def _entry_bytes(part: NewPartition) -> bytes:
    encoded = part.name.encode("utf-16-le")
    if len(encoded) > 72:
        raise InvalidPartitionLayout(
            f"partition name {part.name!r} is longer than 36 UTF-16 characters"
        )
    return _ENTRY.pack(
        _guid_bytes(part.type_guid),
        _guid_bytes(part.part_guid) if part.part_guid else uuid.uuid4().bytes_le,
        part.start_lba,
        part.end_lba,
        part.attributes,
        encoded,
    )


def _header_bytes(
    *,
    my_lba: int,
    alternate_lba: int,
    first_usable: int,
    last_usable: int,
    disk_guid: str,
    entries_lba: int,
    entry_count: int,
    entries_crc: int,
) -> bytes:
    def pack(crc: int) -> bytes:
        return _HEADER.pack(
            GPT_SIGNATURE,
            GPT_REVISION,
            GPT_HEADER_SIZE,
            crc,
            0,
            my_lba,
            alternate_lba,
            first_usable,
            last_usable,
            _guid_bytes(disk_guid),
            entries_lba,
            entry_count,
            GPT_ENTRY_SIZE,
            entries_crc,
        )

    return pack(zlib.crc32(pack(0))).ljust(SECTOR_SIZE, b"\0")


def _check_layout(
    partitions: Sequence[NewPartition], first_usable: int, last_usable: int, entry_count: int
) -> list[tuple[int, NewPartition]]:
    numbered: list[tuple[int, NewPartition]] = []
    for index, part in enumerate(partitions):
        number = part.number if part.number is not None else index + 1
        if not 1 <= number <= entry_count:
            raise InvalidPartitionLayout(f"partition number {number} is not in 1..{entry_count}")
        if part.end_lba < part.start_lba:
            raise InvalidPartitionLayout(
                f"partition {number}: ends at LBA {part.end_lba}, before its start "
                f"at LBA {part.start_lba}"
            )
        if part.start_lba < first_usable or part.end_lba > last_usable:
            raise InvalidPartitionLayout(
                f"partition {number}: LBA {part.start_lba}-{part.end_lba} is outside the usable "
                f"LBAs {first_usable}-{last_usable}"
            )
        if part.type_guid == UNUSED_TYPE:
            raise InvalidPartitionLayout(f"partition {number}: the all-zero type means unused")
        numbered.append((number, part))
    numbers = [n for n, _ in numbered]
    if len(set(numbers)) != len(numbers):
        raise InvalidPartitionLayout(f"partition numbers repeat: {sorted(numbers)}")
    ordered = sorted(numbered, key=lambda item: item[1].start_lba)
    for (num_a, a), (num_b, b) in itertools.pairwise(ordered):
        if b.start_lba <= a.end_lba:
            raise InvalidPartitionLayout(f"partitions {num_a} and {num_b} overlap")
    return numbered


def _mbr_sector(
    existing: bytes,
    mode: MbrMode,
    disk_sectors: int,
    first_usable: int,
    entries: Sequence[MbrEntry],
) -> bytes:
    if mode is MbrMode.PROTECTIVE:
        table = [protective_mbr_entry(disk_sectors)]
    else:
        table = list(entries)
        if not any(e.type == MBR_PROTECTIVE_TYPE for e in table):
            # The 0xee entry covers the GPT structures in front of the first partition,
            # which is how gdisk builds a hybrid MBR.
            table.append(protective_mbr_entry(disk_sectors, 1, first_usable - 1))
        if len(table) > 4:
            raise InvalidPartitionLayout(
                f"a hybrid MBR holds 4 entries, {len(table)} were asked for (one is the 0xee)"
            )
    raw = b"".join(e.to_bytes() for e in table).ljust(64, b"\0")
    # Boot code, disk signature and the two bytes after it stay as they were.
    return existing[:MBR_TABLE_OFFSET] + raw + MBR_SIGNATURE


@dataclass(frozen=True)
class GptImage:
    """The bytes of a GPT for one disk, ready to write: `entry_array` goes at LBA 2 and at
    `backup_array_lba`, `primary_header` at LBA 1, `backup_header` at `last_lba`."""

    primary_header: bytes
    backup_header: bytes
    entry_array: bytes  # padded to whole sectors
    backup_array_lba: int
    last_lba: int
    first_usable: int


def build_gpt(
    disk_size_bytes: int,
    partitions: Sequence[NewPartition],
    *,
    disk_guid: str | None = None,
    first_usable_lba: int | None = None,
    entry_count: int = GPT_ENTRY_COUNT,
) -> GptImage:
    """Check a partition layout and pack its primary and backup GPT (CRCs and all), without
    touching any file: for callers that stream a whole image themselves (the ISO builder)."""
    if disk_size_bytes % SECTOR_SIZE:
        raise InvalidPartitionLayout(
            f"disk size {disk_size_bytes} is not a multiple of {SECTOR_SIZE} bytes"
        )
    if not 1 <= entry_count * GPT_ENTRY_SIZE <= _MAX_ENTRY_ARRAY_BYTES:
        raise InvalidPartitionLayout(f"{entry_count} partition entries is not a sensible number")
    sectors = disk_size_bytes // SECTOR_SIZE
    array_sectors = -(-entry_count * GPT_ENTRY_SIZE // SECTOR_SIZE)
    first_usable = 2 + array_sectors if first_usable_lba is None else first_usable_lba
    last_usable = sectors - 2 - array_sectors
    if first_usable < 2 + array_sectors:
        raise InvalidPartitionLayout(
            f"first usable LBA {first_usable} would overlap the partition entry array "
            f"(LBA 2-{1 + array_sectors})"
        )
    if last_usable < first_usable:
        raise InvalidPartitionLayout(
            f"a disk of {disk_size_bytes} bytes is too small for a GPT with {entry_count} entries"
        )
    numbered = _check_layout(partitions, first_usable, last_usable, entry_count)
    array = bytearray(entry_count * GPT_ENTRY_SIZE)
    for number, part in numbered:
        offset = (number - 1) * GPT_ENTRY_SIZE
        array[offset : offset + GPT_ENTRY_SIZE] = _entry_bytes(part)
    entries_crc = zlib.crc32(array)
    guid = str(uuid.UUID(disk_guid)) if disk_guid else str(uuid.uuid4())
    last_lba = sectors - 1
    backup_array_lba = last_lba - array_sectors

    def header(my_lba: int, alternate_lba: int, entries_lba: int) -> bytes:
        return _header_bytes(
            my_lba=my_lba,
            alternate_lba=alternate_lba,
            first_usable=first_usable,
            last_usable=last_usable,
            disk_guid=guid,
            entries_lba=entries_lba,
            entry_count=entry_count,
            entries_crc=entries_crc,
        )

    return GptImage(
        primary_header=header(1, last_lba, 2),
        backup_header=header(last_lba, 1, backup_array_lba),
        entry_array=bytes(array).ljust(array_sectors * SECTOR_SIZE, b"\0"),
        backup_array_lba=backup_array_lba,
        last_lba=last_lba,
        first_usable=first_usable,
    )


def write_gpt(
    target: Target,
    disk_size_bytes: int,
    partitions: Sequence[NewPartition],
    *,
    disk_guid: str | None = None,
    mbr: MbrMode = MbrMode.PROTECTIVE,
    hybrid_mbr_entries: Sequence[MbrEntry] = (),
    first_usable_lba: int | None = None,
    entry_count: int = GPT_ENTRY_COUNT,
) -> PartitionTable:
    """Write a primary GPT at LBA 1 and a backup at the last LBA, CRCs and all.

    A path that does not exist is created; a file shorter than `disk_size_bytes` is extended
    (sparse). LBA 0 is handled per `mbr`: a fresh protective entry (boot code kept), a hybrid
    table of `hybrid_mbr_entries` plus an 0xee entry, or left alone. Only LBA 0 (unless KEEP),
    the two GPT copies and their entry arrays are written. Returns the table read back.
    """
    if mbr is not MbrMode.HYBRID and hybrid_mbr_entries:
        raise InvalidPartitionLayout("hybrid_mbr_entries are only used with MbrMode.HYBRID")
    gpt = build_gpt(
        disk_size_bytes,
        partitions,
        disk_guid=disk_guid,
        first_usable_lba=first_usable_lba,
        entry_count=entry_count,
    )
    sectors = disk_size_bytes // SECTOR_SIZE
    first_usable, last_lba, backup_array_lba = gpt.first_usable, gpt.last_lba, gpt.backup_array_lba
    primary, backup, array_padded = gpt.primary_header, gpt.backup_header, gpt.entry_array
    with _open_for_write(target) as handle:
        name = str(getattr(handle, "name", "<disk>"))
        size = handle.seek(0, os.SEEK_END)
        if size > disk_size_bytes:
            raise InvalidPartitionLayout(
                f"{name}: is {size} bytes, more than the disk size {disk_size_bytes} given; "
                f"the backup GPT must sit at the very end",
                hint="pass the full size of the image or device",
            )
        if size < disk_size_bytes:
            try:
                handle.truncate(disk_size_bytes)
            except OSError as exc:
                raise InvalidPartitionLayout(
                    f"{name}: cannot grow from {size} to {disk_size_bytes} bytes: "
                    f"{exc.strerror or exc}"
                ) from exc
        handle.seek(0)
        existing = handle.read(SECTOR_SIZE).ljust(SECTOR_SIZE, b"\0")
        if mbr is MbrMode.KEEP:
            kept = parse_mbr(existing)
            if not (kept.has_boot_signature and kept.protective_entries):
                raise InvalidPartitionLayout(
                    "MbrMode.KEEP needs an MBR with an 0xee entry already at LBA 0",
                    hint="use MbrMode.HYBRID to add one while keeping the other entries",
                )
        else:
            handle.seek(0)
            handle.write(_mbr_sector(existing, mbr, sectors, first_usable, hybrid_mbr_entries))
        for lba, data in (
            (1, primary),
            (2, array_padded),
            (backup_array_lba, array_padded),
            (last_lba, backup),
        ):
            handle.seek(lba * SECTOR_SIZE)
            handle.write(data)
        handle.flush()
        try:
            os.fsync(handle.fileno())
        except (OSError, io.UnsupportedOperation):
            pass  # an in-memory file has nothing to sync
        handle.seek(0)
        return read_partition_table(handle)


@contextmanager
def _open_for_write(target: Target) -> Iterator[BinaryIO]:
    if not isinstance(target, str | os.PathLike):
        yield target
        return
    name = os.fspath(target)
    try:
        fd = os.open(name, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise InvalidPartitionTable(f"{name}: cannot open for writing: {exc.strerror}") from exc
    with open(fd, "r+b") as handle:
        yield handle


__all__ = [
    "ATTRIBUTE_LEGACY_BIOS_BOOTABLE",
    "BASIC_DATA_TYPE",
    "BIOS_BOOT_TYPE",
    "ESP_TYPE",
    "LINUX_FS_TYPE",
    "LINUX_SWAP_TYPE",
    "SECTOR_SIZE",
    "GptHeader",
    "InvalidPartitionLayout",
    "InvalidPartitionTable",
    "Mbr",
    "MbrEntry",
    "MbrMode",
    "NewPartition",
    "Partition",
    "PartitionTable",
    "PartitionTableKind",
    "parse_gpt_entries",
    "parse_gpt_header",
    "parse_mbr",
    "protective_mbr_entry",
    "read_partition_table",
    "validate_gpt",
    "write_gpt",
]
