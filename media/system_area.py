"""The hybrid system area of an Engine ISO: an isohybrid MBR plus a valid GPT.

The same file must boot as a CD and as a raw USB disk, on BIOS and UEFI. BIOS disk boot goes
through isolinux's isohybrid MBR code (`isohdpfx.bin`), which loads isolinux.bin from the LBA
patched into the MBR. UEFI disk boot needs a GPT that firmware can trust: a protective MBR
entry, primary and backup headers and entry arrays with correct CRCs, and partitions that do
not overlap, one of which is the FAT ESP image inside the ISO. Because the ESP lies inside the
ISO 9660 data, the ISO data around it is split into two "basic data" partitions.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from typing import BinaryIO

from enginekit.errors import InternalError
from enginekit.gpt import (
    BASIC_DATA_TYPE,
    ESP_TYPE,
    GPT_ENTRY_COUNT,
    GPT_ENTRY_SIZE,
    MBR_PROTECTIVE_TYPE,
    NewPartition,
    build_gpt,
)

SECTOR = 512
ISO_BLOCK = 2048
GPT_ARRAY_SECTORS = GPT_ENTRY_COUNT * GPT_ENTRY_SIZE // SECTOR  # 32
# The backup array and header at the end of the disk: 33 sectors, rounded to ISO blocks.
GPT_TAIL_BLOCKS = -(-(GPT_ARRAY_SECTORS + 1) * SECTOR // ISO_BLOCK)
# Pad the image to whole MiB: USB writers and old CHS-minded BIOSes like aligned sizes.
ALIGN_BYTES = 1024 * 1024
# ISO 9660 volume descriptors start at 32 KiB; that is where the first data partition starts.
ISO_DATA_LBA = 64


@dataclass(frozen=True)
class HybridLayout:
    """Where things are, in 512-byte sectors of the final image."""

    total_sectors: int
    isolinux_lba: int  # isolinux.bin, for the MBR boot code
    partitions: tuple[NewPartition, ...]
    disk_guid: str
    mbr_signature: int


def padded_volume_blocks(iso_blocks: int) -> int:
    """Volume size in 2048-byte blocks once the backup GPT is added and the image aligned."""
    per_align = ALIGN_BYTES // ISO_BLOCK
    wanted = iso_blocks + GPT_TAIL_BLOCKS
    return -(-wanted // per_align) * per_align


def plan_layout(
    total_blocks: int, isolinux_block: int, esp_block: int, esp_bytes: int
) -> HybridLayout:
    """The GPT partitions for an image of `total_blocks` ISO blocks whose ESP image starts at
    ISO block `esp_block`: ISO data before the ESP, the ESP, ISO data after it."""
    total = total_blocks * 4
    last_usable = total - GPT_ARRAY_SECTORS - 2
    esp_first = esp_block * 4
    esp_last = esp_first + -(-esp_bytes // SECTOR) - 1
    if esp_first < ISO_DATA_LBA or esp_last > last_usable:
        raise InternalError(f"ESP image at sectors {esp_first}-{esp_last} is outside the disk")
    parts: list[NewPartition] = []
    if esp_first > ISO_DATA_LBA:
        parts.append(NewPartition(ISO_DATA_LBA, esp_first - 1, BASIC_DATA_TYPE, "ISO9660"))
    parts.append(NewPartition(esp_first, esp_last, ESP_TYPE, "EFI boot"))
    # End the last partition on a 4-sector (2 KiB) boundary, as partitioning tools prefer.
    tail_last = (last_usable + 1) // 4 * 4 - 1
    if esp_last < tail_last:
        parts.append(NewPartition(esp_last + 1, tail_last, BASIC_DATA_TYPE, "ISO9660"))
    disk_guid = uuid.uuid4()
    return HybridLayout(
        total_sectors=total,
        isolinux_lba=isolinux_block * 4,
        partitions=tuple(parts),
        disk_guid=str(disk_guid),
        mbr_signature=int.from_bytes(disk_guid.bytes[:4], "little") or 1,
    )


def _chs(lba: int) -> bytes:
    """CHS triple for 64 heads x 32 sectors (isohybrid's geometry), saturated past 1023."""
    cylinder, rest = divmod(lba, 64 * 32)
    head, sector = divmod(rest, 32)
    if cylinder > 1023:
        return b"\xfe\xff\xff"
    return bytes([head, ((cylinder >> 2) & 0xC0) | (sector + 1), cylinder & 0xFF])


def mbr_sector(mbr_code: bytes, layout: HybridLayout) -> bytes:
    """isohybrid MBR: isolinux's boot code, the isolinux.bin LBA it loads, a disk signature,
    and one protective (0xEE) entry so GPT-aware firmware and tools use the GPT."""
    if len(mbr_code) < 432:
        raise InternalError("the isohybrid MBR template is shorter than 432 bytes")
    code = mbr_code[:432]
    if code[:4] == b"\x33\xed\x90\x90":
        # Two of the template's leading NOPs become one two-byte NOP (66 90): the code does
        # the same, but pycdlib no longer takes the sector for one of its own isohybrid MBRs,
        # whose parser insists on an active entry. Ours has only the inactive protective
        # entry the UEFI specification asks for, and pycdlib would refuse to open the ISO.
        code = code[:2] + b"\x66\x90" + code[4:]
    size = min(layout.total_sectors - 1, 0xFFFFFFFF)
    # The protective entry stays inactive (0x00) as the UEFI spec asks; sgdisk warns otherwise.
    entry = (
        b"\x00"
        + _chs(1)
        + bytes([MBR_PROTECTIVE_TYPE])
        + _chs(layout.total_sectors - 1)
        + struct.pack("<II", 1, size)
    )
    sector = (
        code
        + struct.pack("<QI", layout.isolinux_lba, layout.mbr_signature)
        + b"\0\0"
        + entry
        + b"\0" * 48
        + b"\x55\xaa"
    )
    assert len(sector) == SECTOR
    return sector


def volume_size_field(blocks: int) -> bytes:
    """The both-endian volume space size as stored at offset 80 of a volume descriptor."""
    return struct.pack("<I", blocks) + struct.pack(">I", blocks)


def system_area_writes(layout: HybridLayout, mbr_code: bytes) -> list[tuple[int, bytes]]:
    """(offset, bytes) pairs: MBR + primary GPT at the start, backup GPT at the very end."""
    total_bytes = layout.total_sectors * SECTOR
    gpt = build_gpt(total_bytes, layout.partitions, disk_guid=layout.disk_guid)
    head = mbr_sector(mbr_code, layout) + gpt.primary_header + gpt.entry_array
    tail = gpt.entry_array + gpt.backup_header
    return [(0, head), (total_bytes - len(tail), tail)]


@dataclass(frozen=True)
class HybridInfo:
    """What the system area of an image holds, and what is wrong with its GPT."""

    mbr: bool  # a boot sector signature and at least one partition entry
    isohybrid: bool  # isolinux's hybrid MBR code (it carries the isolinux.bin LBA)
    gpt: bool  # a primary GPT header signature at LBA 1
    gpt_problems: tuple[str, ...]

    @property
    def gpt_valid(self) -> bool:
        return self.gpt and not self.gpt_problems


def read_hybrid(fp: BinaryIO, file_size: int) -> HybridInfo:
    """What the system area holds; the GPT is judged by `enginekit.gpt.validate_gpt` (both
    headers and arrays, CRCs, agreement, placement, overlaps, protective MBR entry)."""
    from enginekit.gpt import validate_gpt

    fp.seek(0)
    head = fp.read(2 * SECTOR)
    if len(head) < 2 * SECTOR or file_size < 3 * SECTOR:
        return HybridInfo(False, False, False, ())
    mbr = head[:SECTOR]
    entries = [mbr[446 + 16 * i : 446 + 16 * (i + 1)] for i in range(4)]
    has_mbr = mbr[510:512] == b"\x55\xaa" and any(e[4] != 0 for e in entries)
    # isolinux's hybrid MBR code loads isolinux.bin from the LBA stored at byte 432.
    isohybrid = has_mbr and struct.unpack_from("<I", mbr, 432)[0] != 0
    if head[SECTOR : SECTOR + 8] != b"EFI PART":
        return HybridInfo(has_mbr, isohybrid, False, ())
    return HybridInfo(has_mbr, isohybrid, True, tuple(validate_gpt(fp)))
