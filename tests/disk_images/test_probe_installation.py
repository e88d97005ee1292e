"""Build Engine installations through the session API, then probe them read-only and compare."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from commands import engine_disk as cli
from disk_images.errors import NotAnEngineInstallation
from disk_images.image import partition_json, read_table
from disk_images.layout import STATE_PATH, Slot
from disk_images.probe import Installation, NoInstallation, NoInstallationKind, Repair, probe
from disk_images.session import open_installation
from disk_images.state import Registration, RegistrationMode, UpgradeStatus
from enginekit.process import run, which
from enginekit.versions import DiskLayout

from .conftest import InstallationBuilder

pytestmark = pytest.mark.root


def _assert_matches(result: object, built: object) -> None:
    assert isinstance(result, Installation), result
    assert result.layout is built.layout  # type: ignore[attr-defined]
    assert result.upgrade_status is built.state.upgrade_status  # type: ignore[attr-defined]
    assert result.registered == built.config.registered  # type: ignore[attr-defined]
    assert result.keyboard == built.config.keyboard  # type: ignore[attr-defined]
    expected_vms = {
        name: (rec.kind.value, rec.pv_drivers, rec.published_for, size)
        for name, (rec, size) in built.vms.items()  # type: ignore[attr-defined]
    }
    found_vms = {
        vm.name: (vm.kind, vm.pv_drivers, vm.published_for, vm.size_bytes) for vm in result.vms
    }
    assert found_vms == expected_vms
    assert result.install_complete
    assert result.problems == ()


def test_gpt_ab_installation_probes_back(
    tmp_path: Path, installation_builder: InstallationBuilder, file_hash: Callable[[Path], str]
) -> None:
    disk = tmp_path / "engine.img"
    built = installation_builder(
        disk,
        DiskLayout.GPT_AB,
        version="5.0.0",
        other_slot_version="4.5.0",
        active=Slot.B,
        upgrade_status=UpgradeStatus.INSTALLED_REBOOT_REQUIRED,
        disk_id="3f2504e0-4f89-41d3-9a0c-0305e82c3301",
    )
    before = file_hash(disk)
    result = probe(disk)
    _assert_matches(result, built)
    assert isinstance(result, Installation)
    assert result.version == "5.0.0"
    assert result.active_slot is Slot.B
    assert result.slots == {Slot.A: "4.5.0", Slot.B: "5.0.0"}
    assert result.disk_id == "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
    assert tuple(e.file_name for e in result.boot_entries) == built.boot_entries
    assert [partition_json(p) for p in result.partitions] == [
        partition_json(p) for p in read_table(disk).partitions
    ]  # our own table reader agrees with sfdisk
    assert file_hash(disk) == before

    # the CLI's JSON carries the installation's keys; the token never appears
    assert cli.main(["inspect", str(disk), "--json"]) == 0


def test_inspect_json_keys_and_no_token(
    tmp_path: Path, installation_builder: InstallationBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    disk = tmp_path / "engine.img"
    installation_builder(disk, DiskLayout.GPT_AB, upgrade_status=UpgradeStatus.SIGNALLED)
    assert cli.main(["inspect", str(disk), "--json"]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert set(doc) >= {"partitions", "engine", "vms", "disk_id"}
    assert doc["engine"]["version"] == "4.5.0"
    assert doc["engine"]["layout"] == "gpt-ab"
    assert doc["engine"]["active_slot"] == "A"
    assert doc["engine"]["upgrade_status"] == "Signalled"
    assert doc["engine"]["registered"] is True
    assert doc["engine"]["disk_id"] == doc["disk_id"]
    assert {vm["name"] for vm in doc["vms"]} == {"win7-shared", "dev-custom", "local.vm_1"}
    for vm in doc["vms"]:
        assert set(vm) == {"name", "kind", "pv_drivers", "published_for", "size_bytes"}
    assert "s3cret-token" not in out
    assert cli.main(["inspect", str(disk)]) == 0
    text = capsys.readouterr().out
    assert "Engine 4.5.0 (gpt-ab), active slot A" in text
    assert "upgrade status: Signalled" in text
    assert "s3cret-token" not in text


def test_mbr_installation_probes_back(
    tmp_path: Path, installation_builder: InstallationBuilder, file_hash: Callable[[Path], str]
) -> None:
    disk = tmp_path / "engine40.img"
    built = installation_builder(
        disk,
        DiskLayout.MBR,
        version="4.0.0",
        registration=Registration(RegistrationMode.STANDALONE),
        disk_id="0x1234abcd",
    )
    before = file_hash(disk)
    result = probe(disk)
    _assert_matches(result, built)
    assert isinstance(result, Installation)
    assert result.version == "4.0.0"
    assert result.active_slot is None
    assert result.slots == {Slot.A: "4.0.0", Slot.B: None}
    assert result.disk_id == "mbr-1234abcd"
    assert result.registered is False
    assert result.boot_entries == ()
    assert result.partitions[0].bootable
    assert file_hash(disk) == before


def test_corrupt_state_is_a_damaged_installation_with_its_vms(
    tmp_path: Path, installation_builder: InstallationBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    disk = tmp_path / "engine.img"
    built = installation_builder(disk, DiskLayout.GPT_AB)
    with open_installation(disk) as session:
        session.storage.write_atomic(STATE_PATH, b'{"active_slot": "C"}')
    result = probe(disk)
    assert isinstance(result, Installation)
    assert len(result.damage) == 1
    assert "storage:/engine/state.json" in result.damage[0]
    assert result.repairs == (Repair.REWRITE_STATE,)
    # What the disk shows instead: the newest entry's slot is active, no upgrade pending.
    assert result.active_slot is Slot.A
    assert result.state.pending_slot is None
    assert result.state.generation == 2
    assert result.version == "4.5.0"
    assert {vm.name for vm in result.vms} == set(built.vms)
    assert cli.main(["inspect", str(disk)]) == 0
    text = capsys.readouterr().out
    assert "damaged Engine 4.5.0 (gpt-ab), active slot A" in text
    assert "damaged: storage:/engine/state.json" in text
    assert "repair: rewrite /engine/state.json from the boot entries and slots" in text
    assert "VMs: 3" in text


def test_incomplete_install_without_release(
    tmp_path: Path, installation_builder: InstallationBuilder
) -> None:
    disk = tmp_path / "engine.img"
    installation_builder(disk, DiskLayout.GPT_AB, vms=())
    with open_installation(disk) as session:
        session.slot(Slot.A).remove("/engine-release")
    result = probe(disk)
    assert isinstance(result, NoInstallation)
    assert result.kind is NoInstallationKind.INCOMPLETE
    assert "no engine-release" in result.reason


def test_probe_needs_no_root(tmp_path: Path, installation_builder: InstallationBuilder) -> None:
    """The probe runs as user nobody on a world-readable image and finds the installation."""
    disk = tmp_path / "engine.img"
    installation_builder(disk, DiskLayout.GPT_AB, vms=())
    if which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    # tmp_path's parents are private to root, so give nobody a readable copy elsewhere
    shared = Path(tempfile.mkdtemp(prefix="enginekit-noroot-"))
    try:
        shared.chmod(0o755)
        copy = shared / "engine.img"
        run(["cp", "--sparse=always", disk, copy])
        copy.chmod(0o444)
        proc = run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                sys.executable,
                "-m",
                "commands.engine_disk",
                "inspect",
                "--json",
                copy,
            ],
            check=False,
            env={"HOME": "/nonexistent", "TMPDIR": "/tmp"},
            cwd=Path(__file__).parents[2],
        )
    finally:
        shutil.rmtree(shared)
    assert proc.returncode == 0, proc.stderr
    engine = json.loads(proc.stdout)["engine"]
    assert engine["version"] == "4.5.0"
    assert engine["boot_entries"] == ["engine-2-a+3.conf"]  # mtools read the ESP too


def test_session_format_slot_then_write(
    tmp_path: Path, installation_builder: InstallationBuilder
) -> None:
    disk = tmp_path / "engine.img"
    installation_builder(disk, DiskLayout.GPT_AB, vms=(), other_slot_version="4.0.0")
    from disk_images.layout import PartitionRole
    from disk_images.state import EngineRelease

    with open_installation(disk) as session:
        session.format(PartitionRole.SYSTEM_B)  # wipes the old 4.0.0 slot
        assert session.read_release(Slot.B) is None
        session.write_release(Slot.B, EngineRelease("5.0.0", Slot.B, "5.0.0"))
        with pytest.raises(NotAnEngineInstallation, match="in use in this session"):
            session.format(PartitionRole.SYSTEM_B)
    result = probe(disk)
    assert isinstance(result, Installation)
    assert result.slots == {Slot.A: "4.5.0", Slot.B: "5.0.0"}


def test_unreadable_vms_are_listed_with_the_reason(
    tmp_path: Path,
    installation_builder: InstallationBuilder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    disk = tmp_path / "engine.img"
    installation_builder(disk, DiskLayout.GPT_AB)
    with open_installation(disk) as session:
        session.storage.makedirs("/vms/my vm (old)")  # a name no VM record can have
        session.storage.write_atomic("/vms/my vm (old)/disk.img", b"user data")
        session.storage.makedirs("/vms/no-record")  # a VM directory without vm.json
    result = probe(disk)
    assert isinstance(result, Installation)
    assert len(result.vms) == 3
    assert [(vm.name, vm.reason) for vm in result.unreadable_vms] == [
        ("my vm (old)", "not a valid VM directory name"),
        ("no-record", "vm.json is missing"),
    ]
    assert cli.main(["inspect", str(disk)]) == 0
    text = capsys.readouterr().out
    assert "VMs: 3 (and 2 unreadable)" in text
    assert "my vm (old)          unreadable: not a valid VM directory name" in text
    assert "warning: storage:/vms/my vm (old): not a valid VM directory name; VM skipped" in text
    assert cli.main(["inspect", str(disk), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["unreadable_vms"] == [
        {"name": "my vm (old)", "reason": "not a valid VM directory name"},
        {"name": "no-record", "reason": "vm.json is missing"},
    ]


def test_a_pending_slot_that_holds_no_engine_is_flagged(
    tmp_path: Path, installation_builder: InstallationBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    disk = tmp_path / "engine.img"
    installation_builder(disk, DiskLayout.GPT_AB)  # slot B holds no Engine
    with open_installation(disk) as session:
        state = session.read_state()
        assert state is not None
        session.write_state(
            replace(
                state,
                pending_slot=Slot.B,
                upgrade_status=UpgradeStatus.INSTALLED_REBOOT_REQUIRED,
                previous_version="4.5.0",
            )
        )
    result = probe(disk)
    assert isinstance(result, Installation)
    assert result.slots[Slot.B] is None
    warning = (
        "the upgrade status says slot B is pending, but slot B holds no Engine "
        "(/engine-release missing): its first boot will fail and fall back to slot A; run "
        "the upgrade again"
    )
    assert result.problems == (warning,)
    assert cli.main(["inspect", str(disk)]) == 0
    assert warning in " ".join(capsys.readouterr().out.split())
