"""GPT inspection: one pass over both copies that reads them and lists every structural
problem the way `sgdisk -v` would find them.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from enginekit.gpt.disk import Disk
from enginekit.gpt.format import (
    GPT_ENTRY_SIZE,
    GPT_HEADER_SIZE,
    GPT_REVISION,
    MAX_ENTRY_ARRAY_BYTES,
    MBR_PROTECTIVE_TYPE,
    SECTOR_SIZE,
    GptHeader,
    Mbr,
    Partition,
    parse_gpt_entries,
    parse_gpt_header,
    parse_mbr,
)


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


def _read_copy(disk: Disk, label: str, lba: int, expect_my_lba: int) -> _GptCopy:
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
    if array_bytes > MAX_ENTRY_ARRAY_BYTES:
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


def inspect_gpt(disk: Disk) -> _GptInspection:
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
