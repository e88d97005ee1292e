"""Property: random partition layouts and random small file trees round-trip through
create -> partition -> mkfs -> write (kernel mount for ext4, mtools for FAT) -> read back
read-only (our table reader + sfdisk, debugfs, mtools) -> probe."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disk_images.ext4_reader import read_ext4_files
from disk_images.filesystems import make_ext4, make_vfat
from disk_images.image import MIB, PartitionSpec, TableType, create_image, partition_image
from disk_images.loop import LoopDevice
from disk_images.mount import MountStack
from disk_images.partition_files import DirectoryFiles, FatFiles
from disk_images.probe import NoInstallation, NoInstallationKind, probe

pytestmark = pytest.mark.root

FAT_MIN_MIB = 36  # FAT32 with 512-byte clusters needs ~33 MiB


@dataclass(frozen=True)
class PlannedPartition:
    gap_mib: int
    size_mib: int
    fs: str | None  # "ext4" | "vfat" | None (left unformatted)
    name: str
    files: dict[str, bytes]


_component = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=10)


@st.composite
def file_trees(draw: st.DrawFn) -> dict[str, bytes]:
    tree: dict[str, bytes] = {}
    for _ in range(draw(st.integers(0, 5))):
        parts = draw(st.lists(_component, min_size=1, max_size=3))
        path = "/" + "/".join(parts)
        lowered = path.lower()
        # no file may also be a directory of another file (FAT compares names case-blind)
        clash = any(
            other.lower() == lowered
            or other.lower().startswith(lowered + "/")
            or lowered.startswith(other.lower() + "/")
            for other in tree
        )
        if clash or parts[0] == "lost+found":
            continue
        tree[path] = draw(st.binary(max_size=3000))
    return tree


@st.composite
def partitions(draw: st.DrawFn, table: TableType) -> PlannedPartition:
    fs = draw(st.sampled_from(["ext4", "vfat", None]))
    size = draw(st.integers(FAT_MIN_MIB, FAT_MIN_MIB + 12) if fs == "vfat" else st.integers(2, 40))
    name = draw(st.text(alphabet="ABCdef0123-_ ", min_size=1, max_size=20)).strip() or "p"
    return PlannedPartition(
        gap_mib=draw(st.integers(0, 2)),
        size_mib=size,
        fs=fs,
        name=name if table is TableType.GPT else "",
        files=draw(file_trees()) if fs else {},
    )


@st.composite
def layouts(draw: st.DrawFn) -> tuple[TableType, list[PlannedPartition]]:
    table = draw(st.sampled_from([TableType.GPT, TableType.MBR]))
    limit = 6 if table is TableType.GPT else 4
    return table, draw(st.lists(partitions(table), min_size=1, max_size=limit))


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(layout=layouts())
def test_random_layouts_and_trees_round_trip(
    tmp_path: Path, layout: tuple[TableType, list[PlannedPartition]]
) -> None:
    table_type, planned = layout
    workdir = Path(tempfile.mkdtemp(dir=tmp_path))
    disk = workdir / "disk.img"
    cursor = 1
    specs = []
    for part in planned:
        cursor += part.gap_mib
        fat = part.fs == "vfat"
        specs.append(
            PartitionSpec(
                size=part.size_mib * MIB,
                start=cursor * MIB,
                type=("U" if fat else "L")
                if table_type is TableType.GPT
                else ("c" if fat else "L"),
                name=part.name or None,
            )
        )
        cursor += part.size_mib
    create_image(disk, (cursor + 1) * MIB)
    table = partition_image(disk, table_type, specs)
    assert [(p.start_bytes, p.size_bytes) for p in table.partitions] == [
        (s.start, s.size) for s in specs
    ]
    if table_type is TableType.GPT:
        assert [p.name for p in table.partitions] == [s.name for s in specs]

    for part, info in zip(planned, table.partitions, strict=True):
        if part.fs == "ext4":
            make_ext4(disk, "prop", offset=info.start_bytes, size=info.size_bytes)
        elif part.fs == "vfat":
            make_vfat(disk, "PROP", offset=info.start_bytes, size=info.size_bytes)

    # write: ext4 through the kernel (loop + mount), FAT through mtools
    with LoopDevice(disk) as loop, MountStack(workdir) as mounts:
        for part, info in zip(planned, table.partitions, strict=True):
            files: DirectoryFiles | FatFiles
            if part.fs == "ext4":
                files = DirectoryFiles(mounts.mount(loop.partition(info.number), f"p{info.number}"))
            elif part.fs == "vfat":
                files = FatFiles(disk, info.start_bytes)
            else:
                continue
            for path, data in part.files.items():
                files.makedirs(path.rsplit("/", 1)[0] or "/")
                files.write_atomic(path, data)

    # read back without the kernel
    for part, info in zip(planned, table.partitions, strict=True):
        if part.fs == "ext4":
            assert read_ext4_files(disk, info.start_bytes, list(part.files)) == part.files
        elif part.fs == "vfat":
            fat_files = FatFiles(disk, info.start_bytes, read_only=True)
            for path, data in part.files.items():
                assert fat_files.read(path) == data
            tops = {p.split("/")[1] for p in part.files}
            assert {n.lower() for n in fat_files.list("/")} == {t.lower() for t in tops}

    result = probe(disk)
    assert isinstance(result, NoInstallation)
    assert result.kind is NoInstallationKind.FOREIGN
    assert result.partitions == table.partitions
