"""enginekit.gpt against util-linux `sfdisk` and GPT fdisk `sgdisk` as outside oracles.

Images are sparse files in tmp_path partitioned by sfdisk (GPT and MBR, with logical
partitions) or by our writer; sfdisk --json must list the same partitions we read, sgdisk -v
must find no problem in what we write, and every corruption must be named by validate_gpt().
"""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enginekit import gpt
from enginekit.gpt import (
    InvalidPartitionLayout,
    InvalidPartitionTable,
    MbrEntry,
    MbrMode,
    NewPartition,
    PartitionTableKind,
)
from enginekit.process import run, run_text

SBIN = "/usr/sbin:/sbin:/usr/bin"
pytestmark = pytest.mark.skipif(
    not (shutil.which("sgdisk", path=SBIN) and shutil.which("sfdisk", path=SBIN)),
    reason="sgdisk (gdisk) or sfdisk (fdisk) is not installed (run tools/setup)",
)

MiB = 1024 * 1024
SECTORS_64M = 64 * MiB // 512


def sfdisk(image: Path, script: str) -> None:
    run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", image], input=script.encode())


def sfdisk_json(image: Path) -> dict[str, Any]:
    table: dict[str, Any] = json.loads(run_text(["sfdisk", "--json", image]))["partitiontable"]
    return table


def sgdisk_verify(image: Path) -> str:
    proc = run(["sgdisk", "--verify", image], check=False)
    return (proc.stdout + proc.stderr).decode()


def blank(tmp_path: Path, size: int = 64 * MiB, name: str = "disk.img") -> Path:
    image = tmp_path / name
    with open(image, "wb") as handle:
        handle.truncate(size)
    return image


def patch(image: Path, offset: int, data: bytes) -> None:
    with open(image, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def flip(image: Path, offset: int) -> None:
    with open(image, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x01]))


ENGINE_GPT = """label: gpt
start=2048, size=20480, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="engine-esp"
size=40960, name="engine-system-a", attrs="LegacyBIOSBootable"
name="engine-storage"
"""


@pytest.fixture
def gpt_image(tmp_path: Path) -> Path:
    image = blank(tmp_path)
    sfdisk(image, ENGINE_GPT)
    return image


def assert_same_as_sfdisk(image: Path, table: gpt.PartitionTable) -> None:
    theirs = sfdisk_json(image)
    if table.kind is PartitionTableKind.GPT:
        assert theirs["label"] == "gpt"
        assert theirs["id"].lower() == table.disk_id
        assert table.header is not None
        assert theirs["firstlba"] == table.header.first_usable_lba
        assert theirs["lastlba"] == table.header.last_usable_lba
    else:
        assert theirs["label"] == "dos"
        assert f"mbr-{int(theirs['id'], 16):08x}" == table.disk_id
    their_partitions = theirs.get("partitions", [])
    assert len(their_partitions) == len(table.partitions)
    for mine, their in zip(table.partitions, their_partitions, strict=True):
        assert their["node"].endswith(str(mine.number))
        assert (their["start"], their["size"]) == (mine.start_lba, mine.size_lba)
        if table.kind is PartitionTableKind.GPT:
            assert their["type"].lower() == mine.type_guid
            assert their["uuid"].lower() == mine.part_guid
            assert their.get("name", "") == mine.name
            assert ("LegacyBIOSBootable" in their.get("attrs", "")) == mine.bootable
        else:
            assert int(their["type"], 16) == mine.mbr_type
            assert their.get("bootable", False) == mine.bootable


# --- reading, compared with sfdisk ------------------------------------------------------------


def test_reads_sfdisk_gpt_like_sfdisk(gpt_image: Path) -> None:
    table = gpt.read_partition_table(gpt_image)
    assert table.kind is PartitionTableKind.GPT
    assert not table.used_backup
    assert table.problems == ()
    assert gpt.validate_gpt(gpt_image) == []
    assert_same_as_sfdisk(gpt_image, table)
    esp = table.by_name("engine-esp")
    assert esp is not None
    assert esp.type_guid == gpt.ESP_TYPE
    assert esp.start_bytes == MiB
    assert table.by_number(3) == table.by_name("engine-storage")
    printed = run_text(["sgdisk", "--print", gpt_image])
    assert f"Disk identifier (GUID): {table.disk_id.upper()}" in printed


def test_reads_sfdisk_mbr_with_logical_partitions(tmp_path: Path) -> None:
    image = blank(tmp_path)
    sfdisk(
        image,
        "label: dos\nlabel-id: 0x1234abcd\n"
        "start=2048, size=40960, type=83, bootable\n"
        "size=20480, type=ef\n"
        "type=5\n"
        "size=10240, type=83\n"
        "size=10240, type=82\n",
    )
    table = gpt.read_partition_table(image)
    assert table.kind is PartitionTableKind.MBR
    assert table.disk_id == "mbr-1234abcd"
    assert [p.number for p in table.partitions] == [1, 2, 3, 5, 6]
    assert table.partitions[0].bootable
    assert table.partitions[0].type == "83"
    assert_same_as_sfdisk(image, table)
    # validate_gpt on an MBR disk: no GPT is the problem.
    problems = gpt.validate_gpt(image)
    assert "protective MBR missing: no partition of type 0xee in the MBR" in problems
    assert "primary GPT header: no 'EFI PART' signature at LBA 1" in problems


def test_reads_from_an_open_file(gpt_image: Path) -> None:
    with open(gpt_image, "rb") as handle:
        from_file = gpt.read_partition_table(handle)
    assert from_file.partitions == gpt.read_partition_table(gpt_image).partitions


def test_no_partition_table(tmp_path: Path) -> None:
    zeros = blank(tmp_path, 8 * MiB)
    assert gpt.read_partition_table(zeros).kind is PartitionTableKind.NONE
    ext4 = blank(tmp_path, 8 * MiB, "ext4.img")
    run(["mkfs.ext4", "-q", "-F", ext4])
    assert gpt.read_partition_table(ext4).kind is PartitionTableKind.NONE
    if shutil.which("mkfs.vfat", path=SBIN):
        fat = blank(tmp_path, 8 * MiB, "fat.img")
        run(["mkfs.vfat", fat])
        # A FAT boot sector ends in 55 aa too; it must not pass for an MBR.
        assert gpt.read_partition_table(fat).kind is PartitionTableKind.NONE


@pytest.mark.parametrize("what", ["missing", "directory", "empty", "tiny"])
def test_unreadable_input_is_one_clear_error(tmp_path: Path, what: str) -> None:
    path = tmp_path / "x.img"
    if what == "directory":
        path = tmp_path
    elif what == "empty":
        path.write_bytes(b"")
    elif what == "tiny":
        path.write_bytes(b"\0" * 100)
    with pytest.raises(InvalidPartitionTable) as info:
        gpt.read_partition_table(path)
    assert str(path) in info.value.message
    assert "\n" not in info.value.message
    assert info.value.exit_status == 2


def test_stale_gpt_header_behind_an_mbr_reads_as_mbr(tmp_path: Path) -> None:
    image = tmp_path / "stale.img"
    gpt.write_gpt(image, 8 * MiB, [NewPartition(2048, 8191)])
    patch(image, 446, MbrEntry(0x80, 0x83, 2048, 4096).to_bytes() + bytes(48))
    table = gpt.read_partition_table(image)
    assert table.kind is PartitionTableKind.MBR
    assert_same_as_sfdisk(image, table)


# --- corruption, compared with sgdisk ---------------------------------------------------------


def last_sector(image: Path) -> int:
    return image.stat().st_size - 512


@pytest.mark.parametrize(
    ("where", "expected", "sgdisk_says"),
    [
        ("primary header", "primary GPT header: CRC mismatch", "main partition table is invalid"),
        ("primary entries", "primary GPT partition entry array: CRC mismatch", "CRC"),
        ("backup header", "backup GPT header: CRC mismatch", "Backup header: ERROR"),
        ("backup entries", "backup GPT partition entry array: CRC mismatch", "ERROR"),
    ],
)
def test_corruption_is_named(gpt_image: Path, where: str, expected: str, sgdisk_says: str) -> None:
    offset = {
        "primary header": 512 + 60,  # inside the disk GUID
        "primary entries": 1024 + 100,
        "backup header": last_sector(gpt_image) + 60,
        "backup entries": last_sector(gpt_image) - 32 * 512 + 100,
    }[where]
    flip(gpt_image, offset)
    problems = gpt.validate_gpt(gpt_image)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems
    assert sgdisk_says in sgdisk_verify(gpt_image)
    # The partitions are still readable from the other copy, as the kernel would read them.
    table = gpt.read_partition_table(gpt_image)
    assert table.used_backup is where.startswith("primary")
    assert len(table.partitions) == 3
    assert table.problems == tuple(problems)


def test_both_headers_damaged_is_an_error(gpt_image: Path) -> None:
    flip(gpt_image, 512 + 60)
    flip(gpt_image, last_sector(gpt_image) + 60)
    with pytest.raises(InvalidPartitionTable, match="neither copy is usable") as info:
        gpt.read_partition_table(gpt_image)
    assert "primary GPT header: CRC mismatch" in info.value.message
    assert len(gpt.validate_gpt(gpt_image)) == 2


def test_truncated_image_loses_its_backup(gpt_image: Path) -> None:
    with open(gpt_image, "r+b") as handle:
        handle.truncate(32 * MiB)
    problems = gpt.validate_gpt(gpt_image)
    assert any("backup GPT header is not at the last LBA" in p for p in problems)
    assert any("beyond the end of the disk" in p for p in problems)
    assert "No problems found" not in sgdisk_verify(gpt_image)


def test_grown_image_has_backup_in_the_middle(gpt_image: Path) -> None:
    with open(gpt_image, "r+b") as handle:
        handle.truncate(65 * MiB)
    problems = gpt.validate_gpt(gpt_image)
    assert problems == [
        f"backup GPT header is not at the last LBA: the primary header puts it at LBA "
        f"{SECTORS_64M - 1}, the disk's last LBA is {SECTORS_64M + 2048 - 1}"
    ]
    assert "No problems found" not in sgdisk_verify(gpt_image)


def test_missing_protective_mbr(gpt_image: Path) -> None:
    patch(gpt_image, 510, b"\0\0")
    assert gpt.validate_gpt(gpt_image) == [
        "protective MBR missing: no 0x55aa boot signature at LBA 0"
    ]
    # Still read as a GPT: the header at LBA 1 is intact.
    assert gpt.read_partition_table(gpt_image).kind is PartitionTableKind.GPT


def _rewrite_entry(image: Path, index: int, start: int, end: int) -> None:
    """Move partition `index` (0-based) in both arrays and fix every CRC, as a buggy tool might."""
    table = gpt.read_partition_table(image)
    assert table.header is not None
    sectors = image.stat().st_size // 512
    for header_lba in (1, sectors - 1):
        with open(image, "r+b") as handle:
            handle.seek(header_lba * 512)
            header = bytearray(handle.read(512))
            entries_lba = int.from_bytes(header[72:80], "little")
            handle.seek(entries_lba * 512)
            array = bytearray(handle.read(128 * 128))
            array[index * 128 + 32 : index * 128 + 48] = start.to_bytes(8, "little") + end.to_bytes(
                8, "little"
            )
            header[88:92] = zlib.crc32(array).to_bytes(4, "little")
            header[16:20] = b"\0\0\0\0"
            header[16:20] = zlib.crc32(header[:92]).to_bytes(4, "little")
            handle.seek(entries_lba * 512)
            handle.write(array)
            handle.seek(header_lba * 512)
            handle.write(header)


def test_overlapping_partitions(gpt_image: Path) -> None:
    _rewrite_entry(gpt_image, 1, 20000, 63487)
    assert gpt.validate_gpt(gpt_image) == ["partitions 1 and 2 overlap"]
    assert "overlap" in sgdisk_verify(gpt_image)


def test_partition_outside_usable_lbas(gpt_image: Path) -> None:
    _rewrite_entry(gpt_image, 2, 63488, SECTORS_64M - 2)
    problems = gpt.validate_gpt(gpt_image)
    assert problems == [
        f"partition 3: LBA 63488-{SECTORS_64M - 2} is outside the usable LBAs 2048-"
        f"{SECTORS_64M - 34}"
    ]
    assert "No problems found" not in sgdisk_verify(gpt_image)


# --- writing, checked by sgdisk and sfdisk ----------------------------------------------------


def test_write_engine_layout(tmp_path: Path) -> None:
    image = tmp_path / "new.img"  # does not exist yet: created sparse
    guid = str(uuid.uuid4())
    layout = [
        NewPartition(2048, 133119, gpt.ESP_TYPE, "engine-esp"),
        NewPartition(133120, 395263, name="engine-system-a", attributes=4),
        NewPartition(395264, 657407, name="engine-system-b"),
        NewPartition(657408, 1024 * 2048 - 2049, name="engine-storage"),
    ]
    table = gpt.write_gpt(image, 1024 * MiB, layout, disk_guid=guid)
    assert image.stat().st_size == 1024 * MiB
    assert image.stat().st_blocks * 512 < MiB
    assert table.disk_id == guid
    assert table.problems == ()
    assert "No problems found" in sgdisk_verify(image)
    assert_same_as_sfdisk(image, table)
    assert [p.name for p in table.partitions][1] == "engine-system-a"
    assert table.partitions[1].bootable
    assert table.mbr is not None
    assert table.mbr.protective_entries == (1,)


def test_write_keeps_boot_code_and_hybrid_entries(tmp_path: Path) -> None:
    image = blank(tmp_path, 16 * MiB)
    boot_code = bytes(range(256)) + bytes(184)
    patch(image, 0, boot_code + (0xCAFEF00D).to_bytes(4, "little"))
    data_entry = MbrEntry(0x80, 0x17, 2048, 8192)
    table = gpt.write_gpt(
        image,
        16 * MiB,
        [NewPartition(2048, 10239, gpt.BASIC_DATA_TYPE, "ISOHybrid")],
        mbr=MbrMode.HYBRID,
        hybrid_mbr_entries=[data_entry],
    )
    assert table.mbr is not None
    assert table.mbr.is_hybrid
    assert table.mbr.boot_code == boot_code
    assert table.mbr.disk_signature == 0xCAFEF00D
    assert table.mbr.entries[0] == data_entry
    assert table.mbr.entries[1] == MbrEntry(0, 0xEE, 1, 33)
    assert table.problems == ()
    assert "No problems found" in sgdisk_verify(image)
    # KEEP leaves LBA 0 byte for byte, and rewrites only the GPT: a GPT that no longer
    # matches the hybrid entry is reported, by sgdisk and by us.
    lba0 = image.read_bytes()[:512]
    again = gpt.write_gpt(image, 16 * MiB, [NewPartition(4096, 8191)], mbr=MbrMode.KEEP)
    assert image.read_bytes()[:512] == lba0
    assert [(p.start_lba, p.end_lba) for p in again.partitions] == [(4096, 8191)]
    assert again.problems == (
        "hybrid MBR partition 1 (type 0x17, LBA 2048-10239) has no matching GPT partition",
    )
    assert "MBR partition 1, of type 0x17,\nhas no corresponding GPT partition" in (
        sgdisk_verify(image)
    )
    gpt.write_gpt(image, 16 * MiB, [NewPartition(2048, 10239, name="again")], mbr=MbrMode.KEEP)
    assert gpt.validate_gpt(image) == []
    assert "No problems found" in sgdisk_verify(image)


def test_keep_needs_an_existing_0xee_entry(tmp_path: Path) -> None:
    image = blank(tmp_path, 4 * MiB)
    with pytest.raises(InvalidPartitionLayout, match="0xee"):
        gpt.write_gpt(image, 4 * MiB, [], mbr=MbrMode.KEEP)


def test_write_to_an_open_file() -> None:
    buffer = io.BytesIO()
    table = gpt.write_gpt(buffer, 4 * MiB, [NewPartition(34, 8000, name="x")])
    assert len(buffer.getvalue()) == 4 * MiB
    assert gpt.validate_gpt(buffer) == []
    assert table.partitions[0].name == "x"


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ([NewPartition(2048, 4095), NewPartition(4000, 6000)], "partitions 1 and 2 overlap"),
        ([NewPartition(10, 4095)], "outside the usable LBAs 34-"),
        ([NewPartition(2048, 8191 + 100000)], "outside the usable LBAs"),
        ([NewPartition(4096, 2048)], "before its start"),
        ([NewPartition(2048, 4095, name="n" * 37)], "longer than 36"),
        ([NewPartition(2048, 4095, number=129)], "not in 1..128"),
    ],
)
def test_impossible_layouts_are_refused(
    tmp_path: Path, layout: list[NewPartition], message: str
) -> None:
    image = tmp_path / "never.img"
    with pytest.raises(InvalidPartitionLayout, match=message):
        gpt.write_gpt(image, 4 * MiB, layout)
    with pytest.raises(InvalidPartitionLayout, match="multiple of 512"):
        gpt.write_gpt(image, 4 * MiB + 1, [])


def test_refuses_a_disk_size_smaller_than_the_file(tmp_path: Path) -> None:
    image = blank(tmp_path, 8 * MiB)
    with pytest.raises(InvalidPartitionLayout, match="backup GPT must sit at the very end"):
        gpt.write_gpt(image, 4 * MiB, [])
    assert image.read_bytes() == bytes(8 * MiB)


def test_agrees_with_sgdisk_on_xorriso_hybrid_iso(tmp_path: Path) -> None:
    """xorriso's own isohybrid GPT has overlapping MBR entries; both checkers must say so, and
    rewriting the GPT with ours keeps xorriso's MBR while giving a sound GPT."""
    isohdpfx = Path("/usr/lib/ISOLINUX/isohdpfx.bin")
    if not (isohdpfx.exists() and shutil.which("xorriso")):
        pytest.skip("isolinux or xorriso is not installed (run tools/setup)")
    tree = tmp_path / "tree"
    (tree / "boot").mkdir(parents=True)
    esp = tree / "boot" / "efi.img"
    with open(esp, "wb") as handle:
        handle.truncate(1440 * 1024)
    iso = tmp_path / "hybrid.iso"
    run(
        ["xorriso", "-as", "mkisofs", "-quiet", "-o", iso, "-isohybrid-mbr", isohdpfx,
         "-e", "boot/efi.img", "-no-emul-boot", "-isohybrid-gpt-basdat", tree]
    )  # fmt: skip
    problems = gpt.validate_gpt(iso)
    theirs = sgdisk_verify(iso)
    assert "partitions 1 and 2 overlap" in " ".join(problems)
    assert "overlap" in theirs
    size = iso.stat().st_size
    mbr = gpt.parse_mbr(iso.read_bytes()[:512])
    esp_entry = next(e for e in mbr.entries if e.type == 0xEF)
    table = gpt.write_gpt(
        iso,
        size,
        [NewPartition(esp_entry.start_lba, esp_entry.end_lba, gpt.ESP_TYPE, "ESP")],
        mbr=MbrMode.KEEP if mbr.protective_entries else MbrMode.HYBRID,
        hybrid_mbr_entries=() if mbr.protective_entries else [esp_entry],
        first_usable_lba=64,
    )
    assert table.problems == ()
    assert "No problems found" in sgdisk_verify(iso)
    assert iso.read_bytes()[:440] == mbr.boot_code


# --- property: random layouts round-trip ------------------------------------------------------

NAME_CHARS = st.characters(
    whitelist_categories=("Lu", "Ll", "Nd"), max_codepoint=0x17F, blacklist_characters='\\"'
)


@st.composite
def layouts(draw: st.DrawFn) -> tuple[int, list[NewPartition]]:
    disk_sectors = draw(st.integers(min_value=256, max_value=256 * 1024)) * 8
    first, last = 34, disk_sectors - 34
    partitions = []
    cursor = first
    count = draw(st.integers(min_value=0, max_value=8))
    for _ in range(count):
        if cursor > last:
            break
        start = cursor + draw(st.integers(min_value=0, max_value=min(4096, last - cursor)))
        end = start + draw(st.integers(min_value=0, max_value=min(100_000, last - start)))
        partitions.append(
            NewPartition(
                start,
                end,
                draw(st.sampled_from([gpt.LINUX_FS_TYPE, gpt.ESP_TYPE, gpt.BASIC_DATA_TYPE])),
                draw(st.text(NAME_CHARS, max_size=36)),
                attributes=draw(st.sampled_from([0, gpt.ATTRIBUTE_LEGACY_BIOS_BOOTABLE])),
            )
        )
        cursor = end + 1
    return disk_sectors * 512, partitions


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(layout=layouts(), shuffle=st.randoms(use_true_random=False))
def test_random_layouts_round_trip(
    tmp_path_factory: pytest.TempPathFactory, layout: tuple[int, list[NewPartition]], shuffle: Any
) -> None:
    size, partitions = layout
    image = tmp_path_factory.mktemp("layout") / "disk.img"
    # Numbers need not follow disk order: give them in a shuffled order.
    numbered = [
        NewPartition(p.start_lba, p.end_lba, p.type_guid, p.name, None, p.attributes, n + 1)
        for n, p in enumerate(partitions)
    ]
    shuffle.shuffle(numbered)
    table = gpt.write_gpt(image, size, numbered)
    back = gpt.read_partition_table(image)
    assert back == table
    assert back.problems == ()
    assert [
        (p.start_lba, p.end_lba, p.type_guid, p.name, p.attributes) for p in back.partitions
    ] == [(p.start_lba, p.end_lba, p.type_guid, p.name, p.attributes) for p in partitions]
    assert "No problems found" in sgdisk_verify(image)
    assert_same_as_sfdisk(image, back)
    os.unlink(image)


_SOUND = io.BytesIO()
gpt.write_gpt(
    _SOUND,
    2 * MiB,
    [NewPartition(34, 2047, gpt.BIOS_BOOT_TYPE), NewPartition(2048, 4000, name="root")],
)
_SOUND_BYTES = _SOUND.getvalue()
_SOUND_TABLE = gpt.read_partition_table(io.BytesIO(_SOUND_BYTES))
_METADATA = list(range(0, 34 * 512)) + list(range(len(_SOUND_BYTES) - 33 * 512, len(_SOUND_BYTES)))


@settings(max_examples=100, deadline=None)
@given(
    damage=st.lists(
        st.tuples(st.sampled_from(_METADATA), st.integers(min_value=0, max_value=255)),
        min_size=1,
        max_size=12,
    ),
    cut=st.one_of(st.none(), st.integers(min_value=0, max_value=len(_SOUND_BYTES))),
)
def test_damaged_tables_never_crash(damage: list[tuple[int, int]], cut: int | None) -> None:
    data = bytearray(_SOUND_BYTES)
    for offset, value in damage:
        data[offset] = value
    disk = io.BytesIO(bytes(data[:cut]))
    changed = bytes(data) != _SOUND_BYTES or cut is not None
    try:
        table = gpt.read_partition_table(disk)
    except InvalidPartitionTable as exc:
        refusal: InvalidPartitionTable | None = exc
    else:
        refusal = None
        # Damage is either reported or harmless: a GPT read without a problem is the sound one.
        if table.kind is PartitionTableKind.GPT and not table.problems:
            assert table.partitions == _SOUND_TABLE.partitions
    assert refusal is None or "\n" not in refusal.message
    try:
        problems = gpt.validate_gpt(disk)
    except InvalidPartitionTable:
        return
    if not changed:
        assert problems == []
