"""Review fixes B1/B3 for `engine-disk boot`, with real QEMU boots of a real upgraded disk.

B1: the boot holds the disk lock for its whole run, so an upgrade started on the same image
meanwhile is refused with one clear line instead of running under the VM. B3: a boot that
times out says so and leaves the upgrade state alone (the new slot was never proven bad);
only a fallback after the new entry spent its try marks the upgrade Failed. A disk that does
not boot is exit status 1 (not a host error), and --timeout must be above 0.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from commands.engine_disk import main as engine_disk_main
from disk_images.layout import Slot
from disk_images.lock import held_by_enginekit
from disk_images.probe import Installation, probe
from disk_images.state import UpgradeStatus
from installer.engine import run_plan
from installer.plan import InstallMode, InstallPlan
from reference_builds.pytest_plugin import copy_sparse

REPO = Path(__file__).resolve().parents[2]
UPGRADE_ANSWERS = (
    '[eula]\naccept = true\n[keyboard]\nlayout = "us"\n[existing]\naction = "upgrade"\n'
)


@pytest.fixture
def pending_disk(
    tmp_path: Path, engine_disk: Callable[..., Path], engine_medium: Callable[[str], Path]
) -> Path:
    """A 4.5.0 disk upgraded to 5.0.0 and not yet booted: slot B pending with one try."""
    disk = engine_disk("4.5.0", size="1G", with_vms=False)
    plan = InstallPlan(
        engine_medium("5.0.0"), disk, InstallMode.UPGRADE, "5.0.0", eula_accepted=True
    )
    run_plan(plan)
    found = probe(disk)
    assert isinstance(found, Installation)
    assert found.upgrade_status is UpgradeStatus.INSTALLED_REBOOT_REQUIRED
    assert found.state.pending_slot is Slot.B
    return Path(disk)


@pytest.mark.parametrize("timeout", ["0", "-5", "nan"])
def test_boot_timeout_must_be_positive(
    timeout: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        engine_disk_main(["boot", str(tmp_path / "x.img"), "--timeout", timeout])
    assert exit_info.value.code == 2
    assert "must be more than 0 seconds" in capsys.readouterr().err


@pytest.mark.root
@pytest.mark.qemu
@pytest.mark.slow
def test_boot_timeout_leaves_the_upgrade_pending(
    pending_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = engine_disk_main(["boot", str(pending_disk), "--timeout", "3.5"])
    captured = capsys.readouterr()
    assert status == 1, captured
    assert "no ENGINE RUNNING line within 3.5 s" in captured.out
    assert captured.err.startswith(f"error: {pending_disk}: no Engine booted")
    found = probe(pending_disk)
    assert isinstance(found, Installation)
    assert found.upgrade_status is UpgradeStatus.INSTALLED_REBOOT_REQUIRED, found.state
    assert found.state.pending_slot is Slot.B
    assert found.active_slot is Slot.A
    # A real boot afterwards still completes the upgrade (or falls back if the try was spent).
    assert engine_disk_main(["boot", str(pending_disk), "--timeout", "120"]) == 0
    after = probe(pending_disk)
    assert isinstance(after, Installation)
    assert after.upgrade_status in (UpgradeStatus.BLANK, UpgradeStatus.FAILED)
    assert after.state.pending_slot is None


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
        deadline = time.monotonic() + 30
        while not held_by_enginekit(disk):
            assert booting.poll() is None and time.monotonic() < deadline, booting.communicate()
            time.sleep(0.05)
        time.sleep(1.5)  # QEMU is up and booting the disk by now
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
    found = probe(disk)
    assert isinstance(found, Installation)
    assert found.upgrade_status is UpgradeStatus.BLANK and found.active_slot is Slot.B
