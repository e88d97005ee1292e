"""`read_partition_table()` (MBR or GPT, falling back to the backup GPT like the kernel)
and `validate_gpt()`.
"""

from __future__ import annotations

from enginekit.gpt.disk import Disk, open_disk
from enginekit.gpt.format import (
    GPT_SIGNATURE,
    SECTOR_SIZE,
    InvalidPartitionTable,
    PartitionTable,
    PartitionTableKind,
    Target,
    parse_mbr,
)
from enginekit.gpt.mbr import looks_like_mbr, mbr_partitions
from enginekit.gpt.validation import inspect_gpt


def read_partition_table(target: Target) -> PartitionTable:
    """The partition table of a disk image (or device, or open binary file).

    A GPT whose primary copy is damaged is read from its backup, as the kernel does;
    `problems` then says what is wrong. Raises InvalidPartitionTable when the file cannot be
    read as a disk at all (missing, a directory, shorter than a sector) or when both GPT
    copies are damaged.
    """
    with open_disk(target) as disk:
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
        is_mbr = looks_like_mbr(mbr, lba0)
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
                partitions=mbr_partitions(disk, mbr),
                mbr=mbr,
            )
        if has_gpt_header:
            return _read_gpt(disk)
        return PartitionTable(PartitionTableKind.NONE, "", disk.size)


def _read_gpt(disk: Disk) -> PartitionTable:
    inspection = inspect_gpt(disk)
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
    with open_disk(target) as disk:
        if disk.sectors < 3:
            raise InvalidPartitionTable(
                f"{disk.name}: too small to hold a GPT ({disk.size} bytes)",
                hint="the image is empty or truncated",
            )
        return inspect_gpt(disk).problems
