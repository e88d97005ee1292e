"""`check_plan` (the dry run's check and the real run's first step) knows what the disk can
hold and whether it can be read, so neither a payload too big for a system slot nor a
damaged ESP gets past it: the dry run refuses, the real run refuses with the same line, and
the disk's bytes (and so its upgrade status) are unchanged. Real payloads, real images, the
real CLI."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from disk_images.layout import ESP_REGION
from disk_images.probe import Installation, probe
from disk_images.state import UpgradeStatus
from enginekit.process import run
from media.payload_tree import load_tree_manifest, manifest_for_tree, write_manifest
from reference_builds.kernel import Kernel
from reference_builds.payload import write_reference_payload
from reference_builds.pytest_plugin import EngineDiskFactory, sparse_digest

pytestmark = [pytest.mark.root]

MIB = 1024 * 1024
FRESH = """\
[eula]
accept = true
[keyboard]
layout = "us"
[registration]
mode = "standalone"
"""
UPGRADE = """\
[eula]
accept = true
[existing]
action = "upgrade"
"""


def engine_install(*args: object) -> tuple[int, str, str]:
    proc = run(
        [sys.executable, "-m", "commands.engine_install", *map(str, args)], check=False, timeout=600
    )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def both_refuse(medium: Path, disk: Path, answers_text: str, tmp_path: Path) -> tuple[str, str]:
    """The first error line of the dry run and of the real run; the disk is unchanged."""
    answers = tmp_path / "answers.toml"
    answers.write_text(answers_text)
    before = sparse_digest(disk)
    dry = engine_install("--media", medium, "--target", disk, "--answers", answers, "--dry-run")
    real = engine_install("--media", medium, "--target", disk, "--answers", answers)
    assert sparse_digest(disk) == before
    assert dry[0] == real[0] == 2, (dry, real)
    assert "checks passed" not in dry[1]
    return dry[2].splitlines()[0], real[2].splitlines()[0]


def oversized_payload(tmp_path: Path, kernel: Kernel) -> Path:
    """The 5.0.0 payload plus 150 MiB of random data in its system tree (a slot is 128 MiB)."""
    payload = tmp_path / "payload"
    write_reference_payload("5.0.0", payload, kernel)
    for index in range(3):
        big = payload / "system" / "root" / "usr" / "share" / f"blob-{index}.bin"
        with big.open("wb") as stream:
            for _ in range(50):
                stream.write(os.urandom(MIB))
    old = load_tree_manifest(payload)
    manifest = manifest_for_tree(
        payload,
        product=old.product,
        version=old.version,
        upgrade_from=old.upgrade_from,
        pv_drivers=old.pv_drivers,
        layout=old.layout,
        keyboards=list(old.keyboards),
    )
    write_manifest(payload, manifest)
    return payload


def test_a_system_tree_bigger_than_a_slot_is_refused_before_a_fresh_install(
    tmp_path: Path,
    kernel: Kernel,
    blank: Path,
) -> None:
    payload = oversized_payload(tmp_path, kernel)
    dry, real = both_refuse(payload, blank, FRESH, tmp_path)
    assert dry == real
    assert "does not fit system slot A" in dry
    assert "nothing was written" in dry


def test_a_system_tree_bigger_than_a_slot_is_refused_before_an_upgrade(
    tmp_path: Path,
    kernel: Kernel,
    engine_disk: EngineDiskFactory,
) -> None:
    disk = engine_disk("4.5.0", size="2G", with_vms=False)
    payload = oversized_payload(tmp_path, kernel)
    dry, real = both_refuse(payload, disk, UPGRADE, tmp_path)
    assert dry == real
    assert "does not fit system slot B" in dry
    found = probe(disk)
    assert isinstance(found, Installation)
    assert found.upgrade_status is UpgradeStatus.BLANK


def test_an_unreadable_esp_is_refused_before_an_upgrade(
    tmp_path: Path, iso: Path, engine_disk: EngineDiskFactory
) -> None:
    disk = engine_disk("4.5.0", size="2G", with_vms=False)
    assert ESP_REGION.end_mib is not None
    esp_bytes = (ESP_REGION.end_mib - ESP_REGION.start_mib) * MIB
    fd = os.open(disk, os.O_WRONLY)
    try:
        os.pwrite(fd, bytes(esp_bytes), ESP_REGION.start_mib * MIB)
    finally:
        os.close(fd)
    dry, real = both_refuse(iso, disk, UPGRADE, tmp_path)
    assert dry == real
    assert "the ESP (partition 1) holds no readable FAT filesystem" in dry
    assert "mdir" not in dry
    assert "mtools" not in dry
    found = probe(disk)
    assert isinstance(found, Installation)
    assert found.upgrade_status is UpgradeStatus.BLANK
