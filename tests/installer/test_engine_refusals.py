"""The engine's refusals: one clear line each, and the target's bytes unchanged."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from disk_images.image import create_image
from disk_images.loop import LoopDevice
from enginekit.errors import UserInputError
from enginekit.process import run
from installer.engine import run_plan
from installer.plan import InstallMode, InstallPlan
from reference_builds.kernel import Kernel
from reference_builds.payload import write_reference_payload
from reference_builds.pytest_plugin import EngineDiskFactory, EngineMediumFactory, sparse_digest

pytestmark = [pytest.mark.root]


def _plan(medium: Path, target: Path, mode: InstallMode, version: str, **kw: object) -> InstallPlan:
    return InstallPlan(
        medium=medium,
        target=target,
        mode=mode,
        target_version=version,
        eula_accepted=True,
        **kw,  # type: ignore[arg-type]
    )


def _refused(plan: InstallPlan) -> str:
    before = sparse_digest(plan.target) if plan.target.is_file() else None
    with pytest.raises(UserInputError) as caught:
        run_plan(plan)
    message = caught.value.message
    assert "\n" not in message
    if before is not None:
        assert sparse_digest(plan.target) == before, "a refused run changed the disk"
    return message


def test_downgrade_is_refused(
    engine_disk: EngineDiskFactory, engine_medium: EngineMediumFactory
) -> None:
    disk = engine_disk("5.0.0", size="1G", with_vms=False)
    message = _refused(_plan(engine_medium("4.5.0"), disk, InstallMode.UPGRADE, "4.5.0"))
    assert "downgrade" in message


def test_4_0_to_5_0_must_go_through_4_5(
    engine_disk: EngineDiskFactory, engine_medium: EngineMediumFactory
) -> None:
    disk = engine_disk("4.0.0", size="1G", with_vms=False)
    message = _refused(_plan(engine_medium("5.0.0"), disk, InstallMode.UPGRADE, "5.0.0"))
    assert "4.5.0" in message
    assert "first" in message


def test_target_too_small(tmp_path: Path, engine_medium: EngineMediumFactory) -> None:
    disk = create_image(tmp_path / "small.img", 256 * 1024 * 1024)
    message = _refused(_plan(engine_medium("5.0.0"), disk, InstallMode.FRESH, "5.0.0"))
    assert "too small" in message
    assert "512" in message


def test_target_not_writable(tmp_path: Path, engine_medium: EngineMediumFactory) -> None:
    image = create_image(tmp_path / "ro.img", 600 * 1024 * 1024)
    # Immutable: even root cannot open it for writing.
    run(["chattr", "+i", str(image)])
    try:
        message = _refused(_plan(engine_medium("5.0.0"), image, InstallMode.FRESH, "5.0.0"))
    finally:
        run(["chattr", "-i", str(image)])
    assert "not writable" in message


def test_block_device_target_refused(engine_medium: EngineMediumFactory, blank: Path) -> None:
    """Image files only; a block device is one clear line from the engine and the CLI."""
    with LoopDevice(blank) as loop:
        device = loop.device
        message = _refused(_plan(engine_medium("5.0.0"), device, InstallMode.FRESH, "5.0.0"))
        assert message == f"{device}: is a block device; engine-install installs into disk " + (
            "image files only"
        )
        proc = run(
            [sys.executable, "-m", "commands.engine_install",
             "--media", str(engine_medium("5.0.0")),
             "--target", str(device), "--dry-run"],
            check=False,
        )  # fmt: skip
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.splitlines()[0] == f"error: {message}", err
    help_out = run([sys.executable, "-m", "commands.engine_install", "--help"]).stdout.decode()
    help_text = " ".join(help_out.split())
    assert "image file or block device" not in help_text
    assert "block devices are not supported" in help_text
    assert blank.stat().st_blocks == 0


def test_missing_target(tmp_path: Path, engine_medium: EngineMediumFactory) -> None:
    message = _refused(
        _plan(engine_medium("5.0.0"), tmp_path / "nope.img", InstallMode.FRESH, "5.0.0")
    )
    assert "no such disk" in message


def test_eula_not_accepted(tmp_path: Path, engine_medium: EngineMediumFactory) -> None:
    disk = create_image(tmp_path / "d.img", 600 * 1024 * 1024)
    plan = InstallPlan(engine_medium("5.0.0"), disk, InstallMode.FRESH, "5.0.0")
    assert "licence" in _refused(plan)


def test_medium_failing_verification(tmp_path: Path, kernel: Kernel) -> None:
    payload = tmp_path / "payload"
    write_reference_payload("5.0.0", payload, kernel)
    initrd = payload / "system" / "initrd.img"
    data = bytearray(initrd.read_bytes())
    data[100] ^= 0xFF
    initrd.write_bytes(bytes(data))
    disk = create_image(tmp_path / "d.img", 600 * 1024 * 1024)
    message = _refused(_plan(payload, disk, InstallMode.FRESH, "5.0.0"))
    assert "fails verification" in message
    assert "system/initrd.img" in message


def test_payload_path_escaping_its_partition(tmp_path: Path, kernel: Kernel) -> None:
    payload = tmp_path / "payload"
    write_reference_payload("5.0.0", payload, kernel)
    manifest_path = payload / "engine" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][0]["path"] = "system/root/../../etc/passwd"
    manifest_path.write_text(json.dumps(manifest))
    disk = create_image(tmp_path / "d.img", 600 * 1024 * 1024)
    message = _refused(_plan(payload, disk, InstallMode.FRESH, "5.0.0"))
    assert "escapes" in message


def test_medium_of_another_version_than_planned(
    tmp_path: Path, engine_medium: EngineMediumFactory
) -> None:
    disk = create_image(tmp_path / "d.img", 600 * 1024 * 1024)
    message = _refused(_plan(engine_medium("4.5.0"), disk, InstallMode.FRESH, "5.0.0"))
    assert "4.5.0" in message
    assert "5.0.0" in message


def test_fresh_install_over_an_installation_is_refused(
    engine_disk: EngineDiskFactory, engine_medium: EngineMediumFactory
) -> None:
    disk = engine_disk("4.5.0", size="1G", with_vms=False)
    message = _refused(_plan(engine_medium("5.0.0"), disk, InstallMode.FRESH, "5.0.0"))
    assert "already holds Engine 4.5.0" in message


def test_plan_made_for_another_disk_state(
    engine_disk: EngineDiskFactory, engine_medium: EngineMediumFactory
) -> None:
    disk = engine_disk("4.5.0", size="1G", with_vms=False)
    plan = _plan(engine_medium("5.0.0"), disk, InstallMode.UPGRADE, "5.0.0", source_version="4.0.0")
    message = _refused(plan)
    assert "expects Engine 4.0.0" in message
    assert "4.5.0" in message


def test_upgrade_without_installation(tmp_path: Path, engine_medium: EngineMediumFactory) -> None:
    disk = create_image(tmp_path / "d.img", 600 * 1024 * 1024)
    message = _refused(_plan(engine_medium("5.0.0"), disk, InstallMode.UPGRADE, "5.0.0"))
    assert "no Engine installation" in message


def test_migration_refused_when_reserved_regions_are_used(
    engine_disk: EngineDiskFactory, engine_medium: EngineMediumFactory
) -> None:
    import subprocess

    disk = engine_disk("4.0.0", size="1G", with_vms=False)
    # someone put a partition into the region reserved for slot B
    script = f"start={193 * 2048}, size={16 * 2048}, type=83\n"
    subprocess.run(
        ["sfdisk", "--append", "--no-reread", "--no-tell-kernel", "-q", str(disk)],
        input=script.encode(),
        check=True,
        capture_output=True,
    )
    message = _refused(_plan(engine_medium("4.5.0"), disk, InstallMode.UPGRADE, "4.5.0"))
    assert "reserved" in message
