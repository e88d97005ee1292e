"""The on-disk data: state files round-trip and reject bad content naming the file; the
layout's fixed offsets and labels; boot entry names. No root needed."""

from __future__ import annotations

import json

import pytest

from disk_images.errors import InvalidStateFile
from disk_images.image import MIB
from disk_images.layout import (
    BootEntryName,
    Slot,
    engine_partitions,
    match_layout,
)
from disk_images.state import (
    EngineConfig,
    EngineRelease,
    EngineState,
    Registration,
    RegistrationMode,
    UpgradeStatus,
    VmKind,
    VmRecord,
)
from enginekit import gpt
from enginekit.errors import UserInputError
from enginekit.secret import Secret
from enginekit.versions import DiskLayout

SECTORS_PER_MIB = MIB // gpt.SECTOR_SIZE


def test_upgrade_status_values_are_what_synchronizer_shows() -> None:
    assert [s.value for s in UpgradeStatus] == [
        "",
        "Pending",
        "Ready to download update",  # behind a remote server that lacks the kit yet
        "Signalled",
        "Installed (Reboot Required)",
        "Failed",
    ]
    assert UpgradeStatus("").label == "Blank"
    assert UpgradeStatus.INSTALLED_REBOOT_REQUIRED.label == "Installed (Reboot Required)"


@pytest.mark.parametrize(
    "value",
    [
        EngineRelease("5.0.0", Slot.B, "5.0.0"),
        EngineRelease("4.0.0", None, "4.0.0"),
        EngineState(Slot.A, UpgradeStatus.FAILED, 7, Slot.B, "4.5.0", True),
        EngineState(None),
        EngineConfig("de", Registration(RegistrationMode.STANDALONE)),
        EngineConfig(
            "us", Registration(RegistrationMode.SYNCHRONIZER, "sync.lan", Secret("t0ken"))
        ),
        VmRecord("win-10_x.y", VmKind.LOCAL, "4.5.0", "4.0.0"),
        VmRecord("office", VmKind.SHARED, "5.0.0", "5.0.0", image_version=2, pending_version=3),
    ],
)
def test_state_files_round_trip(value: object) -> None:
    kind = type(value)
    data = value.to_json()  # type: ignore[attr-defined]
    assert kind.from_json(data) == value  # type: ignore[attr-defined]
    assert json.loads(data)  # plain JSON


def test_token_never_in_repr() -> None:
    config = EngineConfig(
        "us", Registration(RegistrationMode.SYNCHRONIZER, "sync", Secret("hunter2"))
    )
    assert "hunter2" not in repr(config)
    assert "hunter2" not in str(config)
    assert config.registered


BAD = [
    (EngineState, b"not json", "not valid JSON"),
    (EngineState, b"[]", "must be a JSON object"),
    (
        EngineState,
        b'{"active_slot": "A", "upgrade_status": "Done", "generation": 1, "pending_slot": null,'
        b' "previous_version": null, "install_complete": true}',
        "upgrade_status 'Done' is not one of",
    ),
    (
        EngineState,
        b'{"active_slot": "A", "upgrade_status": "", "generation": 1, "pending_slot": "A",'
        b' "previous_version": null, "install_complete": true}',
        "pending_slot must differ",
    ),
    (
        EngineState,
        b'{"active_slot": "A"}',
        "missing key(s): generation, install_complete, pending_slot, previous_version, "
        "upgrade_status",
    ),
    (
        EngineConfig,
        b'{"keyboard": "us", "registration": {"mode": "standalone"}}',
        "missing key 'registration.server'",
    ),
    (
        EngineRelease,
        b'{"product": "Engine", "version": "5", "slot": "A", "pv_drivers": "5.0.0"}',
        "version '5' is not a version",
    ),
    (
        EngineRelease,
        b'{"product": "Other", "version": "5.0.0", "slot": "A", "pv_drivers": "5.0.0"}',
        "not 'Engine'",
    ),
    (
        EngineConfig,
        b'{"keyboard": "us", "registration": {"mode": "synchronizer", "server": null,'
        b' "token": null}}',
        "needs a server and a token",
    ),
    (
        EngineConfig,
        b'{"keyboard": "us", "registration": {"mode": "standalone", "server": null,'
        b' "token": null, "extra": 1}}',
        "unknown key(s) in registration: extra",
    ),
    (
        VmRecord,
        b'{"name": "../x", "kind": "local", "pv_drivers": "4.0.0", "published_for": "4.0.0"}',
        "not a valid VM name",
    ),
    (
        VmRecord,
        b'{"name": "x", "kind": "weird", "pv_drivers": "4.0.0",'
        b' "published_for": "4.0.0", "more": 2}',
        "unknown key(s): more",
    ),
    (
        VmRecord,
        b'{"name": "x", "kind": "shared", "pv_drivers": "4.0.0",'
        b' "published_for": "4.0.0", "image_version": "two"}',
        "image_version must be a whole number >= 0",
    ),
]


@pytest.mark.parametrize(("kind", "data", "problem"), BAD)
def test_bad_content_names_the_file(kind: type, data: bytes, problem: str) -> None:
    with pytest.raises(InvalidStateFile) as caught:
        kind.from_json(data, "storage:/engine/x.json")  # type: ignore[attr-defined]
    assert caught.value.message.startswith("storage:/engine/x.json: ")
    assert problem in caught.value.message


def test_gpt_layout_offsets_and_labels() -> None:
    size = 8 * 1024**3
    specs = engine_partitions(DiskLayout.GPT_AB, size)
    assert [(s.start, s.size, s.name) for s in specs] == [
        (1 * MIB, 64 * MIB, "engine-esp"),
        (65 * MIB, 128 * MIB, "engine-system-a"),
        (193 * MIB, 128 * MIB, "engine-system-b"),
        (321 * MIB, size - 322 * MIB, "engine-storage"),
    ]


def test_mbr_layout_keeps_the_same_offsets() -> None:
    size = 512 * MIB
    specs = engine_partitions(DiskLayout.MBR, size)
    assert [(s.start, s.size, s.bootable) for s in specs] == [
        (65 * MIB, 128 * MIB, True),
        (321 * MIB, size - 322 * MIB, False),
    ]


def test_too_small_disk_is_refused() -> None:
    with pytest.raises(UserInputError, match="at least 512 MiB"):
        engine_partitions(DiskLayout.GPT_AB, 511 * MIB)


def test_match_layout() -> None:
    def gpt_table(names: list[str]) -> gpt.PartitionTable:
        starts = [1, 65, 193, 321]
        return gpt.PartitionTable(
            gpt.PartitionTableKind.GPT,
            "x",
            512 * MIB,
            tuple(
                gpt.Partition(
                    i + 1,
                    starts[i] * SECTORS_PER_MIB,
                    (starts[i] + 1) * SECTORS_PER_MIB - 1,
                    type_guid=gpt.LINUX_FS_TYPE,
                    name=name,
                )
                for i, name in enumerate(names)
            ),
        )

    def mbr_partition(number: int, start_mib: int) -> gpt.Partition:
        sectors = (start_mib * SECTORS_PER_MIB, (start_mib + 1) * SECTORS_PER_MIB - 1)
        return gpt.Partition(number, *sectors, mbr_type=0x83)

    assert (
        match_layout(
            gpt_table(["engine-esp", "engine-system-a", "engine-system-b", "engine-storage"])
        )
        is DiskLayout.GPT_AB
    )
    assert match_layout(gpt_table(["engine-esp", "engine-system-a", "x", "engine-storage"])) is None
    mbr = gpt.PartitionTable(
        gpt.PartitionTableKind.MBR,
        "mbr-1",
        512 * MIB,
        (mbr_partition(1, 65), mbr_partition(2, 321)),
    )
    assert match_layout(mbr) is DiskLayout.MBR


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("engine-3-a.conf", BootEntryName(3, Slot.A)),
        ("engine-12-b+3.conf", BootEntryName(12, Slot.B, 3)),
        ("engine-12-b+0-3.conf", BootEntryName(12, Slot.B, 0, 3)),
        ("other.conf", None),
        ("engine-1-c.conf", None),
    ],
)
def test_boot_entry_names(name: str, expected: BootEntryName | None) -> None:
    assert BootEntryName.parse(name) == expected
    if expected is not None:
        assert expected.file_name == name
        assert expected.path == f"/loader/entries/{name}"
