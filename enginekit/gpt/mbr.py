"""The partitions of an MBR disk: primary entries and the logical partitions of an extended
one, and how to tell an MBR from a filesystem boot sector.
"""

from __future__ import annotations

from enginekit.gpt.disk import Disk
from enginekit.gpt.format import (
    MAX_LOGICAL_PARTITIONS,
    MBR_EXTENDED_TYPES,
    MBR_SIGNATURE,
    Mbr,
    MbrEntry,
    Partition,
    parse_mbr,
)


def _is_filesystem_boot_sector(sector: bytes) -> bool:
    """A FAT, exFAT or NTFS boot sector: a jump, a sane sector size, and the file system name
    where these formats put it."""
    if sector[0] not in (0xEB, 0xE9):
        return False
    if int.from_bytes(sector[11:13], "little") not in (512, 1024, 2048, 4096):
        return False
    return sector[3:11] in (b"NTFS    ", b"EXFAT   ") or b"FAT" in sector[54:62] + sector[82:90]


def looks_like_mbr(mbr: Mbr, sector: bytes) -> bool:
    """A 0x55aa signature alone also ends FAT and NTFS boot sectors. Their "partition entries"
    are boot code, which rarely has valid status bytes in all four slots; and a whole-disk file
    system without partitions is a file system, not an empty MBR (sfdisk would call it an empty
    dos label; blkid, like us, a file system)."""
    if not mbr.has_boot_signature or any(e.status not in (0x00, 0x80) for e in mbr.entries):
        return False
    return not (_is_filesystem_boot_sector(sector) and all(e.empty for e in mbr.entries))


def mbr_partitions(disk: Disk, mbr: Mbr) -> tuple[Partition, ...]:
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


def _logical_partitions(disk: Disk, extended_start: int) -> list[Partition]:
    """Walk the EBR chain; each EBR's second entry points to the next, relative to the
    extended partition. Bounded, so a looping chain cannot hang us."""
    found: list[Partition] = []
    ebr_lba = extended_start
    seen: set[int] = set()
    while len(found) < MAX_LOGICAL_PARTITIONS and ebr_lba not in seen:
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
