"""Device selection and refusal rules on recorded udev property sets (table-driven).

The fixtures in tests/usb/fixtures are what `udevadm info --query=property --export` and
sysfs showed for hardware we cannot attach here: a USB stick, a USB SD card reader, a USB hard
disk, an internal NVMe system disk, an internal SATA disk and a virtio disk.
"""

from __future__ import annotations

import dataclasses
import stat
from collections.abc import Callable

import pytest

from media.usb.discovery import (
    BlockDeviceInfo,
    Bus,
    Holds,
    MountedPartition,
    parse_udevadm_export,
)
from media.usb.policy import (
    FileTargetInfo,
    RefusalCode,
    TargetKind,
    WriteOptions,
    device_refusals,
    file_refusals,
    hidden_reasons,
    needs_large_disk_confirmation,
    target_kind,
)

Recorded = Callable[[str], BlockDeviceInfo]
GB = 1000**3
ISO_SIZE = 900 * 1024 * 1024


@pytest.mark.parametrize(
    ("name", "path", "bus", "vendor", "model", "serial", "size", "removable"),
    [
        (
            "usb_stick",
            "/dev/sdb",
            Bus.USB,
            "SanDisk",
            "Cruzer Blade",
            "4C530001230517115081",
            30031872 * 512,
            True,
        ),
        (
            "sd_card_reader",
            "/dev/sdc",
            Bus.USB,
            "Generic-",
            "SD/MMC",
            "20121112761000000",
            62333952 * 512,
            True,
        ),
        (
            "usb_hard_disk",
            "/dev/sdd",
            Bus.USB,
            "WD",
            "My Passport 25E2",
            "575844314135394C33525A4A",
            3906963456 * 512,
            False,
        ),
        (
            "nvme_internal",
            "/dev/nvme0n1",
            Bus.NVME,
            "",
            "Samsung SSD 970 EVO Plus 1TB",
            "S4EWNX0R512345A",
            1953525168 * 512,
            False,
        ),
        (
            "sata_internal",
            "/dev/sda",
            Bus.ATA,
            "",
            "Samsung SSD 860 EVO 500GB",
            "S3Z2NB0K512345X",
            976773168 * 512,
            False,
        ),
        ("virtio_disk", "/dev/vdb", Bus.VIRTIO, "", "", "data-disk-01", 16777216 * 512, False),
    ],
)
def test_recorded_devices_are_described(
    recorded: Recorded,
    name: str,
    path: str,
    bus: Bus,
    vendor: str,
    model: str,
    serial: str,
    size: int,
    removable: bool,
) -> None:
    device = recorded(name)
    assert (device.path, device.bus, device.vendor, device.model, device.serial) == (
        path,
        bus,
        vendor,
        model,
        serial,
    )
    assert device.size_bytes == size
    assert device.removable is removable
    assert not device.read_only
    assert not device.is_partition


@pytest.mark.parametrize(
    ("name", "hidden_because"),
    [
        ("usb_stick", []),  # mounted, but still the stick a technician wants to see
        ("sd_card_reader", []),
        ("usb_hard_disk", []),  # not removable, but USB-attached
        ("nvme_internal", ["system disk: holds the running system (/, /boot)", "not removable"]),
        ("sata_internal", ["not removable (internal ata disk)"]),
        ("virtio_disk", ["not removable (internal virtio disk)"]),
    ],
)
def test_list_shows_only_removable_or_usb_disks(
    recorded: Recorded, name: str, hidden_because: list[str]
) -> None:
    reasons = hidden_reasons(recorded(name))
    assert len(reasons) == len(hidden_because)
    for reason, expected in zip(reasons, hidden_because, strict=True):
        assert reason.startswith(expected)


@pytest.mark.parametrize(
    ("change", "image_size", "expected"),
    [
        ({"size_bytes": 0}, None, "no medium"),
        ({"read_only": True}, None, "read-only"),
        ({}, 40 * GB, "too small"),
        ({"holds": frozenset({Holds.IMAGE})}, None, "holds the image file"),
        ({"holds": frozenset({Holds.SWAP})}, None, "system disk: holds the running system"),
        ({"is_partition": True}, None, "a partition"),
    ],
)
def test_list_hides_card_reader_with_a_reason(
    recorded: Recorded, change: dict[str, object], image_size: int | None, expected: str
) -> None:
    device = dataclasses.replace(recorded("sd_card_reader"), **change)  # type: ignore[arg-type]
    reasons = hidden_reasons(device, image_size)
    assert any(r.startswith(expected) for r in reasons), reasons


R = RefusalCode
STICK_MOUNTS = (MountedPartition("/dev/sdb1", "/media/tech/CRUZER"),)


@pytest.mark.parametrize(
    ("name", "change", "options", "image_size", "expected"),
    [
        ("usb_stick", {}, WriteOptions(), ISO_SIZE, {R.MOUNTED}),
        ("usb_stick", {}, WriteOptions(unmount=True), ISO_SIZE, set()),
        ("usb_stick", {"mounted_partitions": ()}, WriteOptions(), ISO_SIZE, set()),
        ("usb_stick", {"mounted_partitions": ()}, WriteOptions(), 16 * GB, {R.TOO_SMALL}),
        ("usb_stick", {"holds": frozenset({Holds.IMAGE})}, WriteOptions(), ISO_SIZE,
         {R.HOLDS_IMAGE, R.MOUNTED}),
        ("usb_stick", {"is_partition": True, "mounted_partitions": ()}, WriteOptions(),
         ISO_SIZE, {R.PARTITION}),
        ("sd_card_reader", {}, WriteOptions(), ISO_SIZE, set()),
        ("sd_card_reader", {"read_only": True}, WriteOptions(force=True), ISO_SIZE,
         {R.READ_ONLY}),
        ("sd_card_reader", {"size_bytes": 0}, WriteOptions(), ISO_SIZE, {R.NO_MEDIUM}),
        ("usb_hard_disk", {}, WriteOptions(), ISO_SIZE, set()),
        ("nvme_internal", {}, WriteOptions(), ISO_SIZE, {R.HOLDS_SYSTEM, R.NOT_REMOVABLE}),
        # Neither --force nor --unmount ever unlocks the disk the system runs from.
        ("nvme_internal", {}, WriteOptions(force=True, unmount=True), ISO_SIZE,
         {R.HOLDS_SYSTEM}),
        ("sata_internal", {}, WriteOptions(), ISO_SIZE, {R.MOUNTED, R.NOT_REMOVABLE}),
        ("sata_internal", {}, WriteOptions(force=True), ISO_SIZE, {R.MOUNTED}),
        ("sata_internal", {}, WriteOptions(force=True, unmount=True), ISO_SIZE, set()),
        ("virtio_disk", {}, WriteOptions(), ISO_SIZE, {R.NOT_REMOVABLE}),
        ("virtio_disk", {}, WriteOptions(force=True), ISO_SIZE, set()),
        ("virtio_disk", {}, WriteOptions(force=True), 9 * 1024**3, {R.TOO_SMALL}),
        # --yes alone never writes a disk above 64 GB; --allow-large (large_ok) does.
        ("usb_hard_disk", {}, WriteOptions(large_ok=False), ISO_SIZE, {R.LARGE}),
        ("usb_stick", {"mounted_partitions": ()}, WriteOptions(large_ok=False), ISO_SIZE,
         set()),
    ],
)  # fmt: skip
def test_write_refusals(
    recorded: Recorded,
    name: str,
    change: dict[str, object],
    options: WriteOptions,
    image_size: int,
    expected: set[RefusalCode],
) -> None:
    device = dataclasses.replace(recorded(name), **change)  # type: ignore[arg-type]
    refusals = device_refusals(device, image_size, options)
    assert {r.code for r in refusals} == expected
    for refusal in refusals:
        line = refusal.line()
        assert "\n" not in line
        assert line.startswith(f"refusing {device.path}: ")
        assert refusal.hint


def test_mounted_refusal_names_the_partition_and_offers_unmount(recorded: Recorded) -> None:
    (refusal,) = device_refusals(recorded("usb_stick"), ISO_SIZE, WriteOptions())
    assert "/dev/sdb1 on /media/tech/CRUZER" in refusal.reason
    assert "--unmount" in refusal.hint


def test_loop_devices_are_hidden_from_the_list_and_need_force() -> None:
    """`usb list` hides a loop device, so writing one takes --force like an internal disk:
    it overwrites the file behind it."""
    loop = BlockDeviceInfo("/dev/loop3", "loop: /tmp/x", "", "", 2 * GB, Bus.LOOP, False, False)
    assert hidden_reasons(loop) == ("virtual device (loop)",)
    (refusal,) = device_refusals(loop, ISO_SIZE, WriteOptions())
    assert refusal.code is R.NOT_REMOVABLE
    assert refusal.line() == "refusing /dev/loop3: is a loop device (loop: /tmp/x), not a USB stick"
    assert "--force" in refusal.hint
    assert device_refusals(loop, ISO_SIZE, WriteOptions(force=True)) == ()


def test_a_loop_device_over_the_image_is_refused_without_exemption() -> None:
    loop = BlockDeviceInfo("/dev/loop3", "loop: /tmp/e.iso", "", "", 2 * GB, Bus.LOOP, False,
                           False, holds=frozenset({Holds.IMAGE_BACKED}))  # fmt: skip
    options = WriteOptions(force=True, unmount=True)
    (refusal,) = device_refusals(loop, ISO_SIZE, options)
    assert refusal.code is R.BACKED_BY_IMAGE
    assert "destroy the image" in refusal.reason
    assert "a loop device over the image file" in hidden_reasons(loop)


@pytest.mark.parametrize(
    ("name", "size", "large"),
    [
        ("usb_stick", None, False),
        ("sd_card_reader", None, False),
        ("usb_hard_disk", None, True),
        ("usb_stick", 64 * GB, False),
        ("usb_stick", 64 * GB + 512, True),
        ("usb_stick", 128 * GB, True),
    ],
)
def test_large_disks_need_an_extra_confirmation(
    recorded: Recorded, name: str, size: int | None, large: bool
) -> None:
    device = recorded(name)
    if size is not None:
        device = dataclasses.replace(device, size_bytes=size)
    assert needs_large_disk_confirmation(device) is large


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (None, RefusalCode.NOT_FOUND),
        (stat.S_IFBLK | 0o660, TargetKind.BLOCK_DEVICE),
        (stat.S_IFREG | 0o644, TargetKind.REGULAR_FILE),
        (stat.S_IFCHR | 0o666, RefusalCode.NOT_A_DEVICE_OR_FILE),
        (stat.S_IFDIR | 0o755, RefusalCode.NOT_A_DEVICE_OR_FILE),
    ],
)
def test_target_kind(mode: int | None, expected: object) -> None:
    verdict = target_kind("/dev/sdzz", mode)
    if isinstance(expected, TargetKind):
        assert verdict is expected
    else:
        assert not isinstance(verdict, TargetKind)
        assert verdict.code is expected
        assert verdict.line().startswith("refusing /dev/sdzz: ")


def test_a_missing_path_says_it_is_never_created() -> None:
    verdict = target_kind("/dev/sdzz", None)
    assert not isinstance(verdict, TargetKind)
    assert "must not create a file" in verdict.reason


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (FileTargetInfo("s.img", 8 * GB, True, False, 10 * GB), set()),
        # A file stands for a stick of its size: smaller than the image is refused, even
        # with room to grow it (a new-user walkthrough found it silently grown).
        (FileTargetInfo("s.img", 0, True, False, 10 * GB), {R.TOO_SMALL}),
        (FileTargetInfo("s.img", ISO_SIZE - 1, True, False, 10 * GB), {R.TOO_SMALL}),
        (FileTargetInfo("s.img", ISO_SIZE, True, False, 0), set()),
        (FileTargetInfo("s.img", 8 * GB, True, False, 0), set()),  # already big enough
        (FileTargetInfo("e.iso", ISO_SIZE, True, True, 10 * GB), {R.IS_IMAGE}),
        (FileTargetInfo("s.img", 8 * GB, False, False, 10 * GB), {R.READ_ONLY}),
        (FileTargetInfo("s.img", 0, True, False, 100), {R.TOO_SMALL}),
        (
            FileTargetInfo("s.img", 8 * GB, True, False, 0, ("(attached to /dev/loop3)",)),
            {R.IN_USE},
        ),
    ],
)
def test_file_refusals(info: FileTargetInfo, expected: set[RefusalCode]) -> None:
    assert {r.code for r in file_refusals(info, ISO_SIZE)} == expected


def test_udevadm_export_quoting() -> None:
    text = "ID_MODEL='Cruzer_Blade'\nID_FS_LABEL='it'\\''s'\nEMPTY=''\n\nbroken line\n"
    assert parse_udevadm_export(text) == {
        "ID_MODEL": "Cruzer_Blade",
        "ID_FS_LABEL": "it's",
        "EMPTY": "",
    }
