"""Bad input and foreign disks: one clear line or "no Engine installation (reason)", never a
traceback, and never a change to the file (hash and mtime compared before and after)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from commands import engine_disk as cli
from disk_images.filesystems import make_ext4
from disk_images.image import MIB, PartitionSpec, TableType, create_image, partition_image
from disk_images.layout import PartitionRole, engine_partitions
from disk_images.probe import NoInstallation, NoInstallationKind, probe
from disk_images.session import open_installation
from enginekit.errors import UserInputError
from enginekit.versions import DiskLayout

from .conftest import InstallationBuilder


def _inspect(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = cli.main(["inspect", str(path)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return status, captured.out, captured.err


def _zero_filled(path: Path) -> None:
    with open(path, "wb") as handle:
        handle.write(bytes(4 * MIB))


def _ext4_no_table(path: Path) -> None:
    create_image(path, 64 * MIB)
    make_ext4(path, "data")


def _mbr_foreign(path: Path) -> None:
    create_image(path, 64 * MIB)
    partition_image(path, TableType.MBR, [PartitionSpec(size=32 * MIB, type="7")])


def _gpt_foreign(path: Path) -> None:
    create_image(path, 64 * MIB)
    partition_image(path, TableType.GPT, [PartitionSpec(size=None, name="windows")])


def _gpt_bad_crc(path: Path) -> None:
    create_image(path, 600 * MIB)
    partition_image(path, TableType.GPT, engine_partitions(DiskLayout.GPT_AB, 600 * MIB))
    with open(path, "r+b") as handle:
        handle.seek(512 + 40)  # first usable LBA: covered by the header CRC
        value = handle.read(1)
        handle.seek(512 + 40)
        handle.write(bytes([value[0] ^ 0x01]))


def _gpt_bad_entries_crc(path: Path) -> None:
    create_image(path, 600 * MIB)
    partition_image(path, TableType.GPT, engine_partitions(DiskLayout.GPT_AB, 600 * MIB))
    with open(path, "r+b") as handle:
        handle.seek(1024 + 56 + 2)  # inside partition 1's name
        handle.write(b"X")


def _truncated(path: Path) -> None:
    create_image(path, 600 * MIB)
    partition_image(path, TableType.GPT, engine_partitions(DiskLayout.GPT_AB, 600 * MIB))
    os.truncate(path, 300 * MIB)


def _truncated_mbr(path: Path) -> None:
    create_image(path, 600 * MIB)
    partition_image(path, TableType.MBR, engine_partitions(DiskLayout.MBR, 600 * MIB))
    os.truncate(path, 100 * MIB)


def _tiny(path: Path) -> None:
    path.write_bytes(b"\x55" * 100)


def _engine_partitions_unformatted(path: Path) -> None:
    create_image(path, 600 * MIB)
    partition_image(path, TableType.GPT, engine_partitions(DiskLayout.GPT_AB, 600 * MIB))


CASES: dict[str, tuple[Callable[[Path], None], NoInstallationKind, str]] = {
    "zero-filled": (_zero_filled, NoInstallationKind.BLANK, "blank disk (no partition table)"),
    "ext4-no-table": (
        _ext4_no_table,
        NoInstallationKind.NO_TABLE,
        "no partition table (the disk holds an ext4 filesystem)",
    ),
    "mbr-foreign": (
        _mbr_foreign,
        NoInstallationKind.FOREIGN,
        "foreign partition table (no Engine partitions)",
    ),
    "gpt-foreign": (
        _gpt_foreign,
        NoInstallationKind.FOREIGN,
        "foreign partition table (no Engine partitions)",
    ),
    "gpt-bad-crc": (_gpt_bad_crc, NoInstallationKind.CORRUPT, "GPT header CRC mismatch"),
    "gpt-bad-entries-crc": (
        _gpt_bad_entries_crc,
        NoInstallationKind.CORRUPT,
        "GPT CRC mismatch (primary GPT partition entry array",
    ),
    "truncated-gpt": (
        _truncated,
        NoInstallationKind.TRUNCATED,
        "truncated image (the GPT describes",
    ),
    "truncated-mbr": (
        _truncated_mbr,
        NoInstallationKind.TRUNCATED,
        "truncated image (the partition table",
    ),
    "tiny": (_tiny, NoInstallationKind.TRUNCATED, "truncated image"),
    "unformatted": (
        _engine_partitions_unformatted,
        NoInstallationKind.INCOMPLETE,
        "Engine partitions present but storage holds no ext4 filesystem",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_foreign_or_broken_disk(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], file_hash: Callable[[Path], str]
) -> None:
    make, kind, reason = CASES[case]
    disk = tmp_path / f"{case}.img"
    make(disk)
    before = file_hash(disk)
    result = probe(disk)
    assert isinstance(result, NoInstallation)
    assert result.kind is kind
    assert result.reason.startswith(reason), result.reason
    status, out, err = _inspect(disk, capsys)
    assert status == 0
    assert err == ""
    assert f"no Engine installation: {result.reason}" in out
    assert file_hash(disk) == before


def test_nonexistent_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.img"
    with pytest.raises(UserInputError, match="no such file"):
        probe(missing)
    status, out, err = _inspect(missing, capsys)
    assert status == 2
    assert out == ""
    assert err.splitlines()[0] == f"error: {missing}: no such file"
    assert not missing.exists()


def test_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UserInputError, match="is a directory"):
        probe(tmp_path)
    status, out, err = _inspect(tmp_path, capsys)
    assert status == 2
    assert out == ""
    assert err.splitlines()[0] == f"error: {tmp_path}: is a directory, not a disk image"


def test_special_file() -> None:
    with pytest.raises(UserInputError, match="not a regular file"):
        probe(Path("/dev/null"))


@pytest.mark.root
def test_disk_in_use_by_a_mount(
    tmp_path: Path,
    installation_builder: InstallationBuilder,
    capsys: pytest.CaptureFixture[str],
    file_hash: Callable[[Path], str],
) -> None:
    disk = tmp_path / "busy.img"
    installation_builder(disk, DiskLayout.GPT_AB, vms=())
    before = file_hash(disk)
    with open_installation(disk, writable=False) as session:
        session.files(PartitionRole.STORAGE)  # mounted now (read-only, so the hash holds)
        session.files(PartitionRole.SYSTEM_A)
        result = probe(disk)
        assert result.found
        assert result.in_use_by == (str(session.loop.device),)
        status, out, err = _inspect(disk, capsys)
        assert status == 0
        assert f"in use by: {session.loop.device}" in out
        assert "error:" not in err
    assert file_hash(disk) == before


@pytest.mark.root
def test_disk_in_use_by_a_writable_mount_is_untouched_by_probe(
    tmp_path: Path, installation_builder: InstallationBuilder, file_hash: Callable[[Path], str]
) -> None:
    """While mounted read-write the kernel owns the file; the probe still adds no write."""
    disk = tmp_path / "busy.img"
    installation_builder(disk, DiskLayout.MBR, vms=())
    with open_installation(disk) as session:
        session.files(PartitionRole.STORAGE)
        os.sync()
        before = file_hash(disk)
        result = probe(disk)
        assert result.found or isinstance(result, NoInstallation)
        assert file_hash(disk) == before


def test_a_disk_with_data_but_no_readable_table_is_named_by_its_content(tmp_path: Path) -> None:
    """The id `engine-disk inspect` shows is the one the installer asks for before erasing:
    derived from the size and first MiB, so another file of the same name has another id."""
    import hashlib

    from commands.engine_disk import result_text

    disk = tmp_path / "mystery.img"
    content = b"\0" * 4096 + b"user data" + b"\0" * (1 << 20)
    disk.write_bytes(content)
    expected = hashlib.sha256(str(len(content)).encode() + content[: 1 << 20]).hexdigest()
    found = probe(disk)
    assert isinstance(found, NoInstallation)
    assert found.disk_id == f"data-{expected[:12]}"
    assert f"disk id: {found.disk_id}" in result_text(disk, found)
    other = tmp_path / "elsewhere" / "mystery.img"  # same name, other content
    other.parent.mkdir()
    other.write_bytes(b"\0" * 4096 + b"other data" + b"\0" * (1 << 20))
    assert probe(other).disk_id not in (None, found.disk_id, "mystery.img")
    grown = tmp_path / "grown.img"  # same first MiB, other size
    grown.write_bytes(content + b"\0" * 512)
    assert probe(grown).disk_id != found.disk_id
    blank = tmp_path / "blank.img"
    blank.write_bytes(b"\0" * (1 << 20))
    assert probe(blank).disk_id is None
