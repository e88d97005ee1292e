"""`engine-install --dry-run`: it refuses everything the real run refuses before writing (the
engine's `check_plan`: target, medium verification, probe, in-use and incomplete-install
guards, not only the target checks), and its text says once that nothing was written and
names the kept keyboard layout the way the plan does. Real medium payloads, real loop devices,
the real CLI.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from disk_images.loop import LoopDevice
from enginekit.process import run
from reference_builds.kernel import Kernel
from reference_builds.payload import write_reference_payload
from reference_builds.pytest_plugin import EngineDiskFactory, sparse_digest

UPGRADE = '[eula]\naccept = true\n[existing]\naction = "upgrade"\n'
FRESH = '[eula]\naccept = true\n[keyboard]\nlayout = "us"\n[registration]\nmode = "standalone"\n'


def dry_run(tmp_path: Path, iso: Path, disk: Path, text: str) -> str:
    answers = tmp_path / "answers.toml"
    answers.write_text(text)
    proc = run(
        [sys.executable, "-m", "commands.engine_install",
             "--media", str(iso), "--target", str(disk),
         "--answers", str(answers), "--dry-run"],
        check=False,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def test_fresh_dry_run_says_nothing_was_written_once(
    tmp_path: Path, iso: Path, blank: Path
) -> None:
    out = dry_run(tmp_path, iso, blank, FRESH)
    assert out.count("nothing was written") == 1, out
    assert "nothing written" not in out, out


@pytest.mark.root
def test_upgrade_plan_names_the_kept_keyboard_consistently(
    tmp_path: Path, iso: Path, engine_disk: EngineDiskFactory
) -> None:
    disk = engine_disk("4.5.0", size="2G", with_vms=False)
    out = dry_run(tmp_path, iso, disk, UPGRADE)
    assert "keep what the disk has" not in out.split("registration:")[0], out
    plan_line = next(line for line in out.splitlines() if line.startswith("keyboard: "))
    layout = plan_line.removeprefix("keyboard: ").removesuffix(" (kept from the disk)")
    assert plan_line.endswith("(kept from the disk)"), out
    assert f"Keyboard: {layout} (kept from the disk)" in out, out


def engine_install(*args: object) -> tuple[int, str, str]:
    proc = run(
        [sys.executable, "-m", "commands.engine_install", *map(str, args)], check=False, timeout=300
    )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def both_runs(medium: Path, disk: Path, answers: Path) -> tuple[str, str]:
    """The error line of the dry run and of the real run, checking the disk is unchanged."""
    before = sparse_digest(disk)
    dry_status, _, dry_err = engine_install(
        "--media", medium, "--target", disk, "--answers", answers, "--dry-run"
    )
    real_status, _, real_err = engine_install(
        "--media", medium, "--target", disk, "--answers", answers
    )
    assert sparse_digest(disk) == before
    assert dry_status == real_status == 2, (dry_err, real_err)
    return dry_err.splitlines()[0], real_err.splitlines()[0]


@pytest.mark.root
def test_dry_run_verifies_the_medium(tmp_path: Path, kernel: Kernel, blank: Path) -> None:
    payload = tmp_path / "payload"
    write_reference_payload("5.0.0", payload, kernel)
    initrd = payload / "system" / "initrd.img"
    data = bytearray(initrd.read_bytes())
    data[100] ^= 0xFF
    initrd.write_bytes(bytes(data))
    answers = tmp_path / "fresh.toml"
    answers.write_text(FRESH)
    dry, real = both_runs(payload, blank, answers)
    assert dry == real
    assert "fails verification" in dry
    assert "system/initrd.img" in dry


@pytest.mark.root
def test_dry_run_refuses_a_disk_in_use(tmp_path: Path, iso: Path, blank: Path) -> None:
    answers = tmp_path / "fresh.toml"
    answers.write_text(FRESH)
    with LoopDevice(blank) as loop:
        device = loop.device
        dry, real = both_runs(iso, blank, answers)
    assert dry == real
    assert "the disk is in use" in dry
    assert str(device) in dry
