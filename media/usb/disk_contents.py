"""What partitions a target already holds, and whether they are an installer medium's.

A stick written with an Engine ISO carries the ISO's hybrid system area: an isohybrid MBR
with one protective entry and a GPT of "ISO9660" basic-data and "EFI boot" ESP partitions
(see `media.system_area`). Rewriting such a stick is the normal re-use; any other partition
table (an Engine disk's `engine-esp`/`engine-system-*`/`engine-storage`, someone's data
partitions) is named so that the user sees what would be lost. Read with `enginekit.gpt`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from enginekit import gpt

# The (name, type) of each partition our hybrid ISO writes.
_INSTALLER_PARTITIONS = frozenset({("ISO9660", gpt.BASIC_DATA_TYPE), ("EFI boot", gpt.ESP_TYPE)})


@dataclass(frozen=True)
class DiskContents:
    """`summary` completes "holds ...": `a GPT with 4 partitions: engine-esp, ...`."""

    summary: str
    is_installer_medium: bool


def _label(partition: gpt.Partition) -> str:
    return partition.name or f"type {partition.type}"


def read_disk_contents(path: Path) -> DiskContents | None:
    """What the disk (image) at `path` holds; None when it holds no partition table (blank,
    or a plain ISO 9660 image without one)."""
    try:
        table = gpt.read_partition_table(path)
    except gpt.InvalidPartitionTable:
        return DiskContents("a damaged partition table", is_installer_medium=False)
    except OSError as exc:
        return DiskContents(f"an unreadable start ({exc.strerror})", is_installer_medium=False)
    if table.kind is gpt.PartitionTableKind.NONE or not table.partitions:
        return None
    kind = str(table.kind).upper()
    count = len(table.partitions)
    names = ", ".join(_label(p) for p in table.partitions)
    installer = table.kind is gpt.PartitionTableKind.GPT and all(
        (p.name, p.type_guid) in _INSTALLER_PARTITIONS for p in table.partitions
    )
    if installer:
        return DiskContents("an Engine installer medium", is_installer_medium=True)
    plural = "partition" if count == 1 else "partitions"
    article = "an" if kind == "MBR" else "a"
    return DiskContents(
        f"{article} {kind} with {count} {plural}: {names}", is_installer_medium=False
    )
