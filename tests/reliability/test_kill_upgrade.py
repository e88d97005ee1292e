"""Upgrades and installs that survive SIGKILL at every step (issue 6).

The unattended upgrade (`engine-install --answers`) runs as a separate process and is killed
with SIGKILL at every checkpoint (`ENGINEKIT_CRASH_AT`, the process kills itself the moment it
reaches the step) and at random moments in between (hypothesis picks the delay). After every
kill: nothing stays attached (loop devices, mounts), the probe still recognises the
installation, the VM disk files hash as before, a copy of the disk boots either the old or the
new Engine (on a subset, to keep time down), and re-running the same upgrade completes it.
The same for the 4.0.0 -> 4.5.0 migration, before and after its point of no return. (Fresh
installs killed midway are covered by test_kill_fresh_install.py.)
Checkpoint kills stop the installer process alone (no child runs at a step boundary); random
kills stop either the process (a child mtools or mkfs call then finishes on its own, like a
write already handed to the kernel) or its whole process group (the child dies mid-write too,
like a power cut).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disk_images.layout import Slot
from disk_images.probe import Installation, probe
from disk_images.state import UpgradeStatus
from installer.engine import run_plan
from installer.engine.checkpoints import (
    CRASH_ENV,
    MIGRATE_STEPS,
    UPGRADE_STEPS,
    Checkpoint,
)
from installer.plan import InstallMode, InstallPlan
from installer.pytest_plugin import copy_sparse, vm_disk_digests

pytestmark = [pytest.mark.root, pytest.mark.slow]

UPGRADE_ANSWERS = (
    '[eula]\naccept = true\n[keyboard]\nlayout = "us"\n[existing]\naction = "upgrade"\n'
)
RELEASE_TIMEOUT = 20.0
# Kill points whose disks are also booted (each boot costs ~15 s under TCG): one before the
# switch (must boot the old Engine) and one right after it (boots the new one).
BOOT_CHECKED = (Checkpoint.WRITE_SLOT, Checkpoint.SET_STATUS)
TALLY: dict[str, list[bool]] = {}
RUN_SECONDS: list[float] = []


def _answers(directory: Path) -> Path:
    answers = directory / "answers.toml"
    answers.write_text(UPGRADE_ANSWERS)
    return answers


def _holders(image: Path) -> list[str]:
    """Loop devices backed by `image` and processes that have it open."""
    found = []
    target = str(image.resolve())
    for block in Path("/sys/block").glob("loop*"):
        try:
            backing = (block / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
        if backing.removesuffix(" (deleted)") == target:
            found.append(f"/dev/{block.name}")
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            links = [os.readlink(fd) for fd in fd_dir.iterdir()]
        except OSError:
            continue
        if target in links:
            found.append(f"pid {fd_dir.parent.name}")
    return found


def _wait_released(image: Path) -> None:
    deadline = time.monotonic() + RELEASE_TIMEOUT
    while (left := _holders(image)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"still holding {image} after the kill: {left}"
    with open("/proc/self/mounts") as mounts:
        assert "enginekit-mnt-" not in mounts.read()


def _run_installer(
    medium: Path,
    disk: Path,
    answers: Path,
    crash_at: str | None = None,
    kill_after: float | None = None,
    whole_group: bool = False,
) -> int:
    env = dict(os.environ)
    env.pop(CRASH_ENV, None)
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    argv = [
        sys.executable,
        "-m",
        "installer.cli",
        "--media",
        str(medium),
        "--target",
        str(disk),
        "--answers",
        str(answers),
    ]
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            if whole_group:  # a power cut: mkfs or mcopy die mid-write too
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"installer failed: {err.decode(errors='replace')}")
    return proc.returncode


def _upgrade_plan(medium: Path, disk: Path) -> InstallPlan:
    return InstallPlan(medium, disk, InstallMode.UPGRADE, "5.0.0", eula_accepted=True)


def _check_after_kill(
    disk: Path, medium: Path, vm_before: dict[str, str], boot: bool, label: str
) -> None:
    ok = False
    try:
        _wait_released(disk)
        found = probe(disk)
        assert isinstance(found, Installation), f"{label}: probe lost the installation: {found}"
        assert found.version in ("4.5.0",), found.version
        assert vm_disk_digests(disk) == vm_before, f"{label}: a VM disk changed"
        if boot:
            from disk_images.boot import boot_installed_disk

            copy = copy_sparse(disk, disk.with_name(disk.name + ".boot"))
            result = boot_installed_disk(copy, timeout=90)
            running = result.running
            assert running is not None, f"{label}: no Engine booted: {result.attempts}"
            assert running.version in ("4.5.0", "5.0.0")
            copy.unlink()
        # re-running the same upgrade completes it
        report = run_plan(_upgrade_plan(medium, disk))
        assert report.upgrade_status == UpgradeStatus.INSTALLED_REBOOT_REQUIRED.value
        after = probe(disk)
        assert isinstance(after, Installation)
        assert after.upgrade_status is UpgradeStatus.INSTALLED_REBOOT_REQUIRED
        assert after.slots[after.state.pending_slot] == "5.0.0"  # type: ignore[index]
        assert {v.pv_drivers for v in after.vms if v.kind == "shared"} == {"5.0.0"}
        assert vm_disk_digests(disk) == vm_before
        _wait_released(disk)
        ok = True
    finally:
        TALLY.setdefault("upgrade", []).append(ok)


@pytest.mark.parametrize("checkpoint", [c.value for c in UPGRADE_STEPS])
def test_upgrade_killed_at_checkpoint(
    checkpoint: str, tmp_path: Path, engine_disk, engine_medium
) -> None:  # type: ignore[no-untyped-def]
    disk = engine_disk("4.5.0", size="2G")
    medium = engine_medium("5.0.0")
    vm_before = vm_disk_digests(disk)
    answers = tmp_path / "answers.toml"
    answers.write_text(UPGRADE_ANSWERS)
    status = _run_installer(medium, disk, answers, crash_at=checkpoint)
    assert status == -signal.SIGKILL, "the crash seam did not fire"
    boot = Checkpoint(checkpoint) in BOOT_CHECKED and shutil.which("qemu-system-x86_64") is not None
    _check_after_kill(disk, medium, vm_before, boot, f"killed at {checkpoint}")


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(fraction=st.floats(min_value=0.02, max_value=0.98), whole_group=st.booleans())
def test_upgrade_killed_at_random_moments(
    fraction: float, whole_group: bool, tmp_path: Path, engine_disk, engine_medium
) -> None:  # type: ignore[no-untyped-def]
    disk = engine_disk("4.5.0", size="2G")
    medium = engine_medium("5.0.0")
    if not RUN_SECONDS:
        # How long a whole uninterrupted run takes here (the faster of two, the first one
        # warms caches); the kills land inside it.
        for attempt in range(2):
            timed = copy_sparse(disk, tmp_path / f"timed-{attempt}.img")
            started = time.monotonic()
            _run_installer(medium, timed, _answers(tmp_path))
            RUN_SECONDS.append(time.monotonic() - started)
            timed.unlink()
        RUN_SECONDS.sort()
    delay = fraction * RUN_SECONDS[0]
    vm_before = vm_disk_digests(disk)
    status = _run_installer(
        medium, disk, _answers(tmp_path), kill_after=delay, whole_group=whole_group
    )
    if status == 0:
        TALLY.setdefault("upgrade (finished before the kill)", []).append(True)
        disk.unlink()
        return
    what = "process group" if whole_group else "process"
    _check_after_kill(disk, medium, vm_before, False, f"{what} killed after {delay:.2f} s")
    disk.unlink()


MIGRATION_KILLS = (
    Checkpoint.MKFS,
    Checkpoint.WRITE_SLOT,
    Checkpoint.WRITE_BOOT_ENTRY,
    Checkpoint.SWITCH_TABLE,
    Checkpoint.SET_STATUS,
)


@pytest.mark.parametrize("checkpoint", MIGRATION_KILLS)
def test_migration_killed_then_rerun(
    checkpoint: Checkpoint, tmp_path: Path, engine_disk, engine_medium
) -> None:  # type: ignore[no-untyped-def]
    """4.0.0 MBR -> 4.5.0 GPT killed before and after its point of no return."""
    assert checkpoint in MIGRATE_STEPS
    disk = engine_disk("4.0.0", size="1G")
    medium = engine_medium("4.5.0")
    vm_before = vm_disk_digests(disk)
    ok = False
    try:
        status = _run_installer(medium, disk, _answers(tmp_path), crash_at=checkpoint.value)
        assert status == -signal.SIGKILL
        _wait_released(disk)
        found = probe(disk)
        assert isinstance(found, Installation) and found.version == "4.0.0", found
        switched = MIGRATE_STEPS.index(checkpoint) > MIGRATE_STEPS.index(Checkpoint.SWITCH_TABLE)
        assert found.layout.value == ("gpt-ab" if switched else "mbr")
        assert vm_disk_digests(disk) == vm_before
        if checkpoint is Checkpoint.SET_STATUS and shutil.which("qemu-system-x86_64"):
            from disk_images.boot import boot_installed_disk

            copy = copy_sparse(disk, disk.with_name(disk.name + ".boot"))
            running = boot_installed_disk(copy, timeout=90).running
            assert running is not None and running.version in ("4.0.0", "4.5.0")
            copy.unlink()
        plan = InstallPlan(medium, disk, InstallMode.UPGRADE, "4.5.0", eula_accepted=True)
        assert run_plan(plan).upgrade_status == UpgradeStatus.INSTALLED_REBOOT_REQUIRED.value
        after = probe(disk)
        assert isinstance(after, Installation) and after.layout.value == "gpt-ab"
        assert after.slots == {Slot.A: "4.0.0", Slot.B: "4.5.0"}
        assert vm_disk_digests(disk) == vm_before
        _wait_released(disk)
        ok = True
    finally:
        TALLY.setdefault("4.0.0 -> 4.5.0 migration", []).append(ok)


def test_kill_tally(capsys: pytest.CaptureFixture[str]) -> None:
    """The closing note: how many kill points were tried and how many survived."""
    with capsys.disabled():
        print()
        for kind, results in TALLY.items():
            print(f"kill points ({kind}): {len(results)} tried, {sum(results)} survived")
    assert all(all(results) for results in TALLY.values())
