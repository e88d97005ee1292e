"""Read, validate and write MBR and GPT partition tables on disk images, in pure Python.

One module per seam: `format` (constants, structures, parsers from bytes), `disk` (sector
reads), `mbr` (MBR partition lists), `validation` (both GPT copies checked like `sgdisk -v`),
`reading` (`read_partition_table`, `validate_gpt`), `writing` (`build_gpt`, `write_gpt`). This
package is the project's one partition-table model and reader; everything is re-exported
here, so callers write `from enginekit import gpt` or `from enginekit.gpt import ...`.
"""

from __future__ import annotations

from enginekit.gpt.format import (
    ATTRIBUTE_LEGACY_BIOS_BOOTABLE,
    BASIC_DATA_TYPE,
    BIOS_BOOT_TYPE,
    ESP_TYPE,
    GPT_ENTRY_COUNT,
    GPT_ENTRY_SIZE,
    GPT_HEADER_SIZE,
    GPT_REVISION,
    GPT_SIGNATURE,
    LINUX_FS_TYPE,
    LINUX_SWAP_TYPE,
    MBR_DISK_SIGNATURE_OFFSET,
    MBR_EXTENDED_TYPES,
    MBR_PROTECTIVE_TYPE,
    MBR_SIGNATURE,
    MBR_TABLE_OFFSET,
    SECTOR_SIZE,
    UNUSED_TYPE,
    GptHeader,
    InvalidPartitionLayout,
    InvalidPartitionTable,
    Mbr,
    MbrEntry,
    MbrMode,
    NewPartition,
    Partition,
    PartitionTable,
    PartitionTableKind,
    Target,
    parse_gpt_entries,
    parse_gpt_header,
    parse_mbr,
    protective_mbr_entry,
)
from enginekit.gpt.reading import (
    read_partition_table,
    validate_gpt,
)
from enginekit.gpt.writing import (
    GptImage,
    build_gpt,
    write_gpt,
)

__all__ = [
    "ATTRIBUTE_LEGACY_BIOS_BOOTABLE",
    "BASIC_DATA_TYPE",
    "BIOS_BOOT_TYPE",
    "ESP_TYPE",
    "GPT_ENTRY_COUNT",
    "GPT_ENTRY_SIZE",
    "GPT_HEADER_SIZE",
    "GPT_REVISION",
    "GPT_SIGNATURE",
    "LINUX_FS_TYPE",
    "LINUX_SWAP_TYPE",
    "MBR_DISK_SIGNATURE_OFFSET",
    "MBR_EXTENDED_TYPES",
    "MBR_PROTECTIVE_TYPE",
    "MBR_SIGNATURE",
    "MBR_TABLE_OFFSET",
    "SECTOR_SIZE",
    "UNUSED_TYPE",
    "GptHeader",
    "GptImage",
    "InvalidPartitionLayout",
    "InvalidPartitionTable",
    "Mbr",
    "MbrEntry",
    "MbrMode",
    "NewPartition",
    "Partition",
    "PartitionTable",
    "PartitionTableKind",
    "Target",
    "build_gpt",
    "parse_gpt_entries",
    "parse_gpt_header",
    "parse_mbr",
    "protective_mbr_entry",
    "read_partition_table",
    "validate_gpt",
    "write_gpt",
]
