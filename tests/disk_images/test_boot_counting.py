"""`engine-disk boot` and systemd-boot's boot counting, with real QEMU boots of a real upgraded
disk.

A boot stopped before the Engine ran (a timeout or Ctrl-C, brought about by the
`ENGINEKIT_BOOT_STOP_AFTER_COUNT` seam at the moment systemd-boot has counted the try, not by
a short clock) gives the try back and leaves the upgrade pending; a new slot that fails and
falls back is exit status 1 and says so. The boot holds the disk lock for its whole run, so an
upgrade started on the same image meanwhile is refused with one clear line. --timeout must be
above 0.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from commands.engine_disk import boot_text
from commands.engine_disk import main as engine_disk_main
from disk_images.boot import STOP_SEAM, BootAttempt, DiskBootResult
from disk_images.layout import Slot
from disk_images.lock import held_by_enginekit, held_by_qemu
from disk_images.probe import Installation, probe
from disk_images.session import open_installation
from disk_images.state import UpgradeStatus
from enginekit.qemu import Firmware
from installer.engine import run_plan
from installer.plan import InstallMode, InstallPlan
from reference_builds.pytest_plugin import copy_sparse, vm_disk_digests

REPO = Path(__file__).resolve().parents[2]
UPGRADE_ANSWERS = (
    '[eula]\naccept = true\n[keyboard]\nlayout = "us"\n[existing]\naction = "upgrade"\n'
)


def probed(disk: Path, status: UpgradeStatus, active: Slot | None = None) -> Installation:
    """What the probe finds on `disk` now: an installation with upgrade status `status` (and,
    when given, `active` as its active slot)."""
    found = probe(disk)
    assert isinstance(found, Installation)
    assert found.upgrade_status is status, found.state
    if active is not None:
        assert found.active_slot is active
    return found


def upgraded_not_booted(disk: Path, medium: Path) -> Path:
    """`disk` (4.5.0) upgraded to 5.0.0 with `medium` and not yet booted: slot B pending with
    one try."""
    run_plan(InstallPlan(medium, disk, InstallMode.UPGRADE, "5.0.0", eula_accepted=True))
    assert probed(disk, UpgradeStatus.INSTALLED_REBOOT_REQUIRED).state.pending_slot is Slot.B
    return disk


@pytest.fixture
def pending_disk(engine_disk: Callable[..., Path], engine_medium: Callable[[str], Path]) -> Path:
    """A 4.5.0 disk without VMs, upgraded to 5.0.0 and not yet booted."""
    return upgraded_not_booted(
        engine_disk("4.5.0", size="1G", with_vms=False), engine_medium("5.0.0")
    )


@pytest.mark.parametrize("timeout", ["0", "-5", "nan"])
def test_boot_timeout_must_be_positive(
    timeout: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        engine_disk_main(["boot", str(tmp_path / "x.img"), "--timeout", timeout])
    assert exit_info.value.code == 2
    assert "must be more than 0 seconds" in capsys.readouterr().err


def _pending_entries(disk: Path) -> list[str]:
    found = probed(disk, UpgradeStatus.INSTALLED_REBOOT_REQUIRED, Slot.A)
    assert found.state.pending_slot is Slot.B
    return [e.file_name for e in found.boot_entries]


@pytest.mark.root
@pytest.mark.qemu
@pytest.mark.slow
def test_boot_stopped_after_the_count_gives_the_try_back(
    pending_disk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STOP_SEAM, "timeout")
    status = engine_disk_main(["boot", str(pending_disk)])
    captured = capsys.readouterr()
    assert status == 1, captured
    assert captured.err.startswith(f"error: {pending_disk}: no Engine booted")
    assert "hint: every attempt ran out of its 120 s; give a longer --timeout" in captured.err
    assert "the try it spent was given back (engine-2-b+0-1.conf -> engine-2-b+1-0.conf)" in (
        captured.out
    )
    assert "the next boot starts engine-2-b+1-0.conf" in captured.out
    assert _pending_entries(pending_disk) == ["engine-1-a.conf", "engine-2-b+1-0.conf"]
    # The next real boot still has its try, so it completes the upgrade.
    monkeypatch.delenv(STOP_SEAM)
    assert engine_disk_main(["boot", str(pending_disk)]) == 0
    probed(pending_disk, UpgradeStatus.BLANK, Slot.B)


@pytest.mark.root
@pytest.mark.qemu
@pytest.mark.slow
def test_interrupted_boot_gives_the_try_back(
    pending_disk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STOP_SEAM, "interrupt")
    status = engine_disk_main(["boot", str(pending_disk)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 130, err
    assert err == [
        f"error: {pending_disk}: interrupted during boot 1; the try it had spent was given "
        "back (engine-2-b+0-1.conf -> engine-2-b+1-0.conf); the next boot starts "
        "engine-2-b+1-0.conf",
        f"hint: boot it again to finish the first boot: engine-disk boot {pending_disk}",
    ]
    assert _pending_entries(pending_disk) == ["engine-1-a.conf", "engine-2-b+1-0.conf"]


@pytest.mark.root
@pytest.mark.qemu
@pytest.mark.slow
def test_fallback_to_the_old_slot_is_exit_status_1_and_the_json_says_which_slot_failed(
    engine_disk: Callable[..., Path],
    engine_medium: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One boot, in --json mode: the error line is the one the text mode prints (the same
    raise), and the document on stdout carries the result as well as the error. The VMs'
    disks are as they were, through the failed boot and the fallback."""
    pending_disk = upgraded_not_booted(engine_disk("4.5.0", size="2G"), engine_medium("5.0.0"))
    vms_before = vm_disk_digests(pending_disk)
    with open_installation(pending_disk) as session:
        session.esp.write_atomic("/engine/b/initrd.img", b"not an initramfs\n" * 512)
    status = engine_disk_main(["boot", str(pending_disk), "--json"])
    captured = capsys.readouterr()
    assert status == 1, captured
    message = (
        f"{pending_disk}: the new slot B did not boot; slot A (Engine 4.5.0) booted "
        "instead and the upgrade status is now Failed"
    )
    assert captured.err.splitlines()[0] == f"error: {message}"
    document = json.loads(captured.out)
    assert (document["error"], document["exit_status"]) == (message, 1)
    assert (document["fell_back"], document["failed_slot"]) == (True, "B")
    assert (document["running"]["version"], document["running"]["slot"]) == ("4.5.0", "A")
    assert document["upgrade_status"] == UpgradeStatus.FAILED.value
    # The new slot's try was spent (systemd-boot renamed its entry), then the old slot booted.
    tried = [(a["entry"], a["failure"] is None) for a in document["attempts"]]
    assert tried == [("engine-2-b+0-1.conf", False), ("engine-1-a.conf", True)], tried
    after = probed(pending_disk, UpgradeStatus.FAILED, Slot.A)
    assert after.version == "4.5.0"
    assert "engine-2-b+0-1.conf" in [e.file_name for e in after.boot_entries]
    assert vm_disk_digests(pending_disk) == vms_before


@pytest.mark.root
@pytest.mark.qemu
@pytest.mark.slow
def test_upgrade_during_a_boot_is_refused(
    pending_disk: Path, tmp_path: Path, engine_medium: Callable[[str], Path]
) -> None:
    """Two real processes: `engine-disk boot` and then `engine-install` on the same image."""
    disk = copy_sparse(pending_disk, tmp_path / "q.img")
    answers = tmp_path / "up.toml"
    answers.write_text(UPGRADE_ANSWERS)
    booting = subprocess.Popen(
        [sys.executable, "-m", "commands.engine_disk", "boot", str(disk), "--timeout", "120"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # Events, not a clock: the boot holds the disk lock, then QEMU has the drive open.
        while not (held_by_enginekit(disk) and held_by_qemu(disk)):
            with contextlib.suppress(subprocess.TimeoutExpired):
                booting.wait(timeout=0.05)  # returns early if the boot died: then fail
            assert booting.poll() is None, booting.communicate()
        argv = [
            sys.executable,
            "-m",
            "commands.engine_install",
            "--media",
            str(engine_medium("5.0.0")),
        ]
        argv += ["--target", str(disk), "--answers", str(answers)]
        upgrade = subprocess.run(argv, cwd=REPO, capture_output=True, timeout=120)
        err = upgrade.stderr.decode()
        assert upgrade.returncode != 0, err
        # The installer refuses before its first write (its in-use check names the holders;
        # open_installation would refuse with the same words if that check were skipped).
        assert "another EngineKit process (boot/install)" in err.splitlines()[0], err
        assert "Traceback" not in err
        out, boot_err = booting.communicate(timeout=300)
    finally:
        if booting.poll() is None:
            booting.kill()
            booting.wait()
    assert booting.returncode == 0, boot_err.decode()
    assert b"ENGINE RUNNING version=5.0.0 slot=B" in out
    probed(disk, UpgradeStatus.BLANK, Slot.B)


def test_a_boot_that_printed_nothing_says_so() -> None:
    silent = BootAttempt(None, None, None, "engine-1-a.conf", "no ENGINE RUNNING line within 3 s",
                         3.0, console_tail="", stopped=True)  # fmt: skip
    result = DiskBootResult(Path("d.img"), Firmware.UEFI, (silent,), UpgradeStatus.BLANK,
                            Slot.A, blessed=None, fell_back=False)  # fmt: skip
    lines = boot_text(result).splitlines()
    assert lines[1] == (
        "  console: nothing: the machine printed no line on its serial console in that time"
    )
