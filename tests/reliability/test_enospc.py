"""A full disk during an upgrade: the upgrade fails with one clear error, the old
Engine still boots, no VM byte changes, and once space is freed the same upgrade completes.
A full ESP is refused before the first write (check_plan knows its free space).

A reference 4.5.0 disk has one of its partitions filled to the last byte before the upgrade
to 5.0.0: the ESP (FAT, through mtools: the new slot's kernel and initrd no longer fit) or the
storage partition (ext4, mounted through `disk_images.session`: not even the small state file
can be rewritten). Slot B itself cannot be pre-filled meaningfully: the upgrade formats it
before writing, so whatever filled it is gone by then.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from disk_images.layout import PartitionRole
from disk_images.probe import Installation, probe
from disk_images.session import open_installation
from disk_images.state import UpgradeStatus
from enginekit.process import require_tool, run, run_text
from reference_builds.pytest_plugin import vm_disk_digests

from .conftest import CliOutcome, assert_clean_outcome, run_console

pytestmark = [pytest.mark.root, pytest.mark.qemu, pytest.mark.slow]

UPGRADE_ANSWERS = """\
[eula]
accept = true
[existing]
action = "upgrade"
[finish]
reboot = false
"""
FILLER = "filler.bin"
MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1"}


def _esp_offset(image: Path) -> int:
    found = probe(image)
    assert isinstance(found, Installation), found
    return next(p.start_bytes for p in found.partitions if p.name == "engine-esp")


def esp_free_bytes(image: Path) -> int:
    mdir = require_tool("mdir", "mtools")
    listing = run_text([mdir, "-i", f"{image}@@{_esp_offset(image)}", "::/"], env=MTOOLS_ENV)
    match = re.search(r"([\d ]+) bytes free", listing)
    assert match, listing
    return int(match.group(1).replace(" ", ""))


def fill_esp(image: Path, workdir: Path) -> None:
    """One file as large as the ESP's free space: afterwards not a cluster is left."""
    host = workdir / FILLER
    with host.open("wb") as stream:
        stream.truncate(esp_free_bytes(image))
    mcopy = require_tool("mcopy", "mtools")
    run([mcopy, "-i", f"{image}@@{_esp_offset(image)}", host, f"::/{FILLER}"], env=MTOOLS_ENV)
    host.unlink()
    assert esp_free_bytes(image) == 0


def free_esp(image: Path) -> None:
    mdel = require_tool("mdel", "mtools")
    run([mdel, "-i", f"{image}@@{_esp_offset(image)}", f"::/{FILLER}"], env=MTOOLS_ENV)


def fill_storage(image: Path) -> None:
    """Allocate every block of the storage filesystem that root can have (the installer
    runs as root): fallocate in halving steps until not even one block is left."""
    with open_installation(image, writable=True) as session:
        root = session.mountpoint(PartitionRole.STORAGE)
        fd = os.open(root / FILLER, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            info = os.statvfs(root)
            block = info.f_frsize
            length = 0
            step = info.f_bfree * block
            while step >= block:
                try:
                    os.posix_fallocate(fd, length, step)
                    length += step
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    step = step // 2 // block * block
            os.fsync(fd)
        finally:
            os.close(fd)
        # Full: not one more block for a new file.
        probe_fd = os.open(root / "one-more", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            with pytest.raises(OSError, match="No space left on device") as refused:
                os.posix_fallocate(probe_fd, 0, block)
            assert refused.value.errno == errno.ENOSPC
        finally:
            os.close(probe_fd)
            os.unlink(root / "one-more")


def free_storage(image: Path) -> None:
    with open_installation(image, writable=True) as session:
        (session.mountpoint(PartitionRole.STORAGE) / FILLER).unlink()


def upgrade(image: Path, medium: Path, answers: Path) -> CliOutcome:
    return run_console("engine-install", "--media", medium, "--target", image, "--answers", answers)


def boot(image: Path) -> CliOutcome:
    return run_console("engine-disk", "boot", image, "--timeout", "150", timeout=400)


@pytest.mark.parametrize("region", ["esp", "storage"])
def test_full_partition_during_upgrade(
    region: str,
    engine_disk: Callable[..., Path],
    engine_medium: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    image = engine_disk("4.5.0", size="2G")
    medium = engine_medium("5.0.0")
    answers = tmp_path / "upgrade.toml"
    answers.write_text(UPGRADE_ANSWERS)
    vms_before = vm_disk_digests(image)
    assert len(vms_before) == 4

    if region == "esp":
        fill_esp(image, tmp_path)
    else:
        fill_storage(image)

    # Every expectation is checked and the broken ones reported together at the end, so
    # that one failure (say, an unclear error) does not hide whether the disk still boots.
    problems: list[str] = []
    failed = upgrade(image, medium, answers)
    if failed.status == 0:
        problems.append(f"the upgrade succeeded on a full {region}")
    try:
        assert_clean_outcome(failed, may_succeed=False)
    except AssertionError as exc:
        problems.append(f"the failed upgrade was not one clear error line:\n{exc}")

    if "free space on the" not in failed.err:
        problems.append(f"the error does not say to free space:\n{failed.err}")

    # The old Engine is still what the disk holds, and it boots.
    found = probe(image)
    if not (isinstance(found, Installation) and found.version == "4.5.0"):
        problems.append(f"after the failed upgrade the probe finds {found}")
    elif region == "esp" and found.upgrade_status is not UpgradeStatus.BLANK:
        # A full ESP is known before the first write: refused then, the status untouched.
        problems.append(f"status after the refused upgrade: {found.upgrade_status!r}")
    booted = boot(image)
    if booted.status != 0 or "ENGINE RUNNING version=4.5.0" not in booted.out:
        problems.append(f"the old Engine did not boot:\n{booted.describe()}")
    if vm_disk_digests(image) != vms_before:
        problems.append("VM disk files changed")

    # Space back: the same upgrade, run again, completes.
    if region == "esp":
        free_esp(image)
    else:
        free_storage(image)
    done = upgrade(image, medium, answers)
    if done.status != 0:
        problems.append(f"the upgrade run again after freeing space failed:\n{done.describe()}")
    found = probe(image)
    if not (
        isinstance(found, Installation)
        and found.active_slot is not None
        and found.slots[found.active_slot.other] == "5.0.0"
        and found.upgrade_status is UpgradeStatus.INSTALLED_REBOOT_REQUIRED
    ):
        problems.append(f"after the second upgrade the probe finds {found}")
    if vm_disk_digests(image) != vms_before:
        problems.append("VM disk files changed by the second upgrade")
    assert not problems, "\n\n".join(problems)
