"""Make filesystems: ext4 for system slots and storage, FAT32 for the EFI System Partition.

Both work either on a device (a loop partition node) or directly on a region of an image file
(`offset` + `size` in bytes), which needs no root and no loop device: `mkfs.ext4 -E offset=`
and `mkfs.vfat --offset`. `make_engine_filesystems` formats every partition of an Engine
layout with the labels from `disk_images.layout`.
"""

from __future__ import annotations

from pathlib import Path

from disk_images.image import MIB, SECTOR, partition
from disk_images.layout import FsType, Region, regions
from enginekit import gpt
from enginekit.errors import UserInputError
from enginekit.process import require_tool, run
from enginekit.versions import DiskLayout

EXT4_LABEL_MAX = 16
FAT_LABEL_MAX = 11


def make_ext4(target: Path, label: str, *, offset: int = 0, size: int | None = None) -> None:
    """mkfs.ext4 on `target` (a device, or an image with the filesystem at `offset`)."""
    if len(label.encode()) > EXT4_LABEL_MAX:
        raise UserInputError(
            f"ext4 label {label!r} is longer than {EXT4_LABEL_MAX} bytes",
            hint="use a shorter label",
        )
    mkfs = require_tool("mkfs.ext4", "e2fsprogs")
    argv: list[str] = [mkfs, "-q", "-F", "-L", label]
    # lazy init keeps mkfs on a multi-GiB sparse image fast and the image sparse
    extended = ["lazy_itable_init=1", "lazy_journal_init=1"]
    if offset:
        extended.append(f"offset={offset}")
    argv += ["-E", ",".join(extended), str(target)]
    if size is not None:
        argv.append(f"{size // 1024}k")
    run(argv, timeout=300)


def make_vfat(target: Path, label: str, *, offset: int = 0, size: int | None = None) -> None:
    """mkfs.vfat -F 32 on `target` (a device, or an image with the filesystem at `offset`)."""
    if len(label) > FAT_LABEL_MAX or label.upper() != label:
        raise UserInputError(
            f"FAT label {label!r} must be at most 11 upper-case characters",
            hint="use a FAT label of at most 11 upper-case characters",
        )
    if offset % SECTOR:
        raise UserInputError(
            f"FAT offset {offset} is not a multiple of {SECTOR}",
            hint="place the filesystem at a whole sector",
        )
    mkfs = require_tool("mkfs.vfat", "dosfstools")
    argv: list[str] = [mkfs, "-F", "32", "-n", label]
    if size is not None and size < 1024 * MIB:
        # 512-byte clusters keep a small FAT32 above its minimum cluster count
        argv += ["-S", "512", "-s", "1"]
    if offset:
        argv += ["--offset", str(offset // SECTOR)]
    argv.append(str(target))
    if size is not None:
        argv.append(str(size // 1024))
    run(argv, timeout=120)


def make_filesystem(
    target: Path, fs_type: FsType, label: str, *, offset: int = 0, size: int | None = None
) -> None:
    if fs_type is FsType.EXT4:
        make_ext4(target, label, offset=offset, size=size)
    else:
        make_vfat(target, label, offset=offset, size=size)


def make_engine_filesystems(
    image: Path,
    layout: DiskLayout,
    table: gpt.PartitionTable,
    only: set[int] | None = None,
) -> dict[int, Region]:
    """Format every partition of an Engine `layout` on `image` in place (no loop device).

    `only` restricts it to some partition numbers (e.g. reformat one slot). Returns what was
    formatted, partition number -> region.
    """
    done: dict[int, Region] = {}
    for number, region in regions(layout).items():
        if only is not None and number not in only:
            continue
        part = partition(table, number)
        make_filesystem(
            image, region.fs_type, region.fs_label, offset=part.start_bytes, size=part.size_bytes
        )
        done[number] = region
    return done
