"""Images, partition tables, mkfs at offsets, and PartitionFiles, all without root: sfdisk is
the oracle for our own table reader, mtools and debugfs read back what we wrote."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from commands import engine_disk as cli
from disk_images.errors import PartitionFileError
from disk_images.ext4_reader import read_ext4_files
from disk_images.filesystems import make_ext4, make_vfat
from disk_images.image import (
    MIB,
    PartitionSpec,
    PartitionType,
    TableType,
    create_image,
    partition_image,
    partition_json,
    read_table,
)
from disk_images.partition_files import DirectoryFiles, FatFiles, PartitionFiles
from enginekit.errors import UserInputError
from enginekit.process import run


def test_create_is_sparse_and_refuses_overwrite(tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    create_image(disk, 8 * 1024**3)
    assert disk.stat().st_size == 8 * 1024**3
    assert disk.stat().st_blocks == 0
    with pytest.raises(UserInputError, match="already exists"):
        create_image(disk, MIB)
    create_image(disk, 2 * MIB, force=True)
    assert disk.stat().st_size == 2 * MIB
    with pytest.raises(UserInputError, match="not a regular file"):
        create_image(tmp_path, MIB, force=True)


def test_cli_create(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    disk = tmp_path / "new.img"
    assert cli.main(["create", str(disk), "--size", "512M"]) == 0
    assert disk.stat().st_size == 512 * MIB
    assert disk.stat().st_blocks == 0
    assert cli.main(["create", str(disk), "--size", "1G"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {disk}: already exists\nhint:")
    assert disk.stat().st_size == 512 * MIB
    assert cli.main(["create", str(disk), "--size", "1G", "--force"]) == 0
    assert disk.stat().st_size == 1024 * MIB
    assert cli.main(["create", str(tmp_path / "x.img"), "--size", "lots"]) == 2
    assert "is not a size" in capsys.readouterr().err


def _sfdisk_table(path: Path) -> tuple[str, str, list[dict[str, object]]]:
    """The oracle: the partition table as util-linux `sfdisk --json` reports it (the table
    kind, the disk id and each partition as `partition_json` shows it)."""
    data = json.loads(run(["sfdisk", "--json", str(path)]).stdout)["partitiontable"]
    table = TableType.GPT if data["label"] == "gpt" else TableType.MBR
    parts: list[dict[str, object]] = []
    for entry in data.get("partitions", []):
        number = int(re.sub(r"^.*?(\d+)$", r"\1", str(entry["node"])))
        type_text = str(entry["type"])
        parts.append(
            {
                "number": number,
                "start": int(entry["start"]) * 512,
                "size": int(entry["size"]) * 512,
                "type": type_text.upper() if table is TableType.GPT else type_text.lower(),
                "name": entry.get("name") if table is TableType.GPT else None,
                "uuid": str(entry["uuid"]).lower() if "uuid" in entry else None,
                "bootable": bool(entry.get("bootable", False)),
            }
        )
    label_id = str(data.get("id", "")).lower()
    disk_id = label_id if table is TableType.GPT else "mbr-" + label_id.removeprefix("0x").zfill(8)
    return table.display, disk_id, parts


@pytest.mark.parametrize("table", [TableType.GPT, TableType.MBR])
def test_partition_table_matches_sfdisk(tmp_path: Path, table: TableType) -> None:
    disk = tmp_path / "disk.img"
    create_image(disk, 64 * MIB)
    specs = [
        PartitionSpec(size=8 * MIB, type=PartitionType.ESP),
        PartitionSpec(size=16 * MIB, start=16 * MIB, bootable=table is TableType.MBR),
        PartitionSpec(size=None),
    ]
    if table is TableType.GPT:
        specs = [
            PartitionSpec(s.size, s.start, s.type, name=f"part-{i}") for i, s in enumerate(specs)
        ]
    disk_id = "0xdeadbeef" if table is TableType.MBR else "11111111-2222-3333-4444-555555555555"
    written = partition_image(disk, table, specs, disk_id=disk_id)
    assert [p.start_bytes for p in written.partitions] == [MIB, 16 * MIB, 32 * MIB]
    ours = read_table(disk)
    assert ours == written
    assert (ours.kind.value, ours.disk_id, [partition_json(p) for p in ours.partitions]) == (
        _sfdisk_table(disk)
    )
    assert ours.disk_id == ("mbr-deadbeef" if table is TableType.MBR else disk_id)


def test_mbr_rejects_names_and_too_many(tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    create_image(disk, 16 * MIB)
    with pytest.raises(UserInputError, match="no name"):
        partition_image(disk, TableType.MBR, [PartitionSpec(MIB, name="x")])
    with pytest.raises(UserInputError, match="at most 4"):
        partition_image(disk, TableType.MBR, [PartitionSpec(MIB)] * 5)


def _exercise(files: PartitionFiles, big: Path) -> None:
    files.makedirs("/loader/entries")
    files.makedirs("/loader/entries")  # idempotent
    assert files.is_dir("/loader")
    assert not files.exists("/loader/x")
    files.write_atomic("/loader/entries/engine-1-a+3.conf", b"one")
    files.write_atomic("/loader/entries/engine-1-a+3.conf", b"two")  # replace
    assert files.read("/loader/entries/engine-1-a+3.conf") == b"two"
    files.rename("/loader/entries/engine-1-a+3.conf", "/loader/entries/engine-1-a+2-1.conf")
    assert files.list("/loader/entries") == ["engine-1-a+2-1.conf"]
    files.write_atomic("/loader/entries/other.conf", b"x")
    files.rename("/loader/entries/other.conf", "/loader/entries/engine-1-a+2-1.conf")  # over
    assert files.read("/loader/entries/engine-1-a+2-1.conf") == b"x"
    files.copy_in(big, "/big.bin")
    assert files.read("/big.bin") == big.read_bytes()
    assert files.size("/big.bin") == big.stat().st_size
    files.remove("/big.bin")
    assert not files.exists("/big.bin")
    assert files.list("/") == ["loader"]
    with pytest.raises(PartitionFileError, match=r"no such|No such"):
        files.read("/missing")
    with pytest.raises(PartitionFileError, match="leaves the partition"):
        files.read("/../etc/passwd")
    with pytest.raises(PartitionFileError, match="not an absolute path"):
        files.read("relative")


def _big_file(tmp_path: Path) -> Path:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(300_000))
    return big


def test_fat_files_at_an_image_offset(tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    create_image(disk, 48 * MIB)
    table = partition_image(disk, TableType.GPT, [PartitionSpec(size=None, type="U", name="esp")])
    part = table.partitions[0]
    make_vfat(disk, "ENGINE-ESP", offset=part.start_bytes, size=part.size_bytes)
    _exercise(FatFiles(disk, part.start_bytes), _big_file(tmp_path))


def test_directory_files(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    files = DirectoryFiles(root, "storage")
    _exercise(files, _big_file(tmp_path))
    os.symlink("/etc", root / "escape")
    with pytest.raises(PartitionFileError, match="outside the partition"):
        files.read("/escape/passwd")


def test_directory_files_copy_in_keeps_holes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    sparse = tmp_path / "disk.img"
    with open(sparse, "wb") as handle:
        handle.truncate(10 * 1024**3)
        handle.seek(5 * 1024**3)
        handle.write(b"middle")
    DirectoryFiles(root).copy_in(sparse, "/copy.img")
    copy = root / "copy.img"
    assert copy.stat().st_size == 10 * 1024**3
    assert copy.stat().st_blocks * 512 < MIB
    with open(copy, "rb") as handle:
        handle.seek(5 * 1024**3)
        assert handle.read(6) == b"middle"


def test_ext4_at_offset_read_back_by_debugfs(tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    create_image(disk, 40 * MIB)
    table = partition_image(disk, TableType.MBR, [PartitionSpec(size=None)])
    part = table.partitions[0]
    make_ext4(disk, "engine-sys-a", offset=part.start_bytes, size=part.size_bytes)
    assert read_ext4_files(disk, part.start_bytes, ["/missing"]) == {"/missing": None}
    with pytest.raises(UserInputError, match="no ext4"):
        read_ext4_files(disk, 0, ["/x"])


@pytest.mark.parametrize(
    ("size", "limit", "why"),
    [
        # A file size limit the filesystem enforces (RLIMIT_FSIZE stands in for ext4's 16 TiB,
        # so the test holds on any filesystem): EFBIG.
        ("2G", "--fsize=1073741824", "File too large"),
        # Beyond any file's size (more than 2**63 bytes).
        ("9000000T", None, "beyond any file's size"),
    ],
)
def test_a_size_the_filesystem_cannot_hold_is_one_error_line(
    tmp_path: Path, size: str, limit: str | None, why: str
) -> None:
    disk = tmp_path / "big.img"
    argv = [sys.executable, "-m", "commands.engine_disk", "create", str(disk), "--size", size]
    if limit is not None:
        argv = ["prlimit", limit, *argv]
    proc = run(argv, check=False, timeout=120)
    err = proc.stderr.decode().splitlines()
    assert proc.returncode == 2, err
    assert len(err) == 2, err
    assert err[0].startswith(f"error: {disk}: the filesystem of {tmp_path} cannot hold a ")
    assert err[0].endswith(f"file: {why}")
    assert err[1].startswith("hint: choose a smaller --size")
    assert sorted(tmp_path.iterdir()) == []
