"""`build_gpt()` packs a primary and backup GPT with correct CRCs (pure), `write_gpt()` lays
them down, optionally keeping an existing (isohybrid) MBR.
"""

from __future__ import annotations

import io
import itertools
import os
import uuid
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import BinaryIO

from enginekit.gpt.format import (
    ENTRY_STRUCT,
    GPT_ENTRY_COUNT,
    GPT_ENTRY_SIZE,
    GPT_HEADER_SIZE,
    GPT_REVISION,
    MAX_ENTRY_ARRAY_BYTES,
    MBR_PROTECTIVE_TYPE,
    MBR_SIGNATURE,
    MBR_TABLE_OFFSET,
    SECTOR_SIZE,
    UNUSED_TYPE,
    GptHeader,
    InvalidPartitionLayout,
    InvalidPartitionTable,
    MbrEntry,
    MbrMode,
    NewPartition,
    PartitionTable,
    Target,
    guid_bytes,
    pack_gpt_header,
    parse_mbr,
    protective_mbr_entry,
)
from enginekit.gpt.reading import read_partition_table


def _entry_bytes(part: NewPartition) -> bytes:
    encoded = part.name.encode("utf-16-le")
    if len(encoded) > 72:
        raise InvalidPartitionLayout(
            f"partition name {part.name!r} is longer than 36 UTF-16 characters"
        )
    return ENTRY_STRUCT.pack(
        guid_bytes(part.type_guid),
        guid_bytes(part.part_guid) if part.part_guid else uuid.uuid4().bytes_le,
        part.start_lba,
        part.end_lba,
        part.attributes,
        encoded,
    )


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
    if not 1 <= entry_count * GPT_ENTRY_SIZE <= MAX_ENTRY_ARRAY_BYTES:
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

    primary = GptHeader(
        revision=GPT_REVISION,
        header_size=GPT_HEADER_SIZE,
        header_crc=0,
        my_lba=1,
        alternate_lba=last_lba,
        first_usable_lba=first_usable,
        last_usable_lba=last_usable,
        disk_guid=guid,
        entries_lba=2,
        entry_count=entry_count,
        entry_size=GPT_ENTRY_SIZE,
        entries_crc=entries_crc,
        computed_crc=0,
    )
    backup = replace(primary, my_lba=last_lba, alternate_lba=1, entries_lba=backup_array_lba)

    return GptImage(
        primary_header=pack_gpt_header(primary),
        backup_header=pack_gpt_header(backup),
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
