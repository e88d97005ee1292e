"""Upgrades and installs that survive SIGKILL at every step.

The unattended upgrade (`engine-install --answers`) runs as a separate process and is killed
with SIGKILL at every checkpoint (`ENGINEKIT_CRASH_AT`, the process kills itself the moment it
reaches the step) and at random moments in between (hypothesis picks the delay). After every
kill: nothing stays attached (loop devices, mounts), the probe still recognises the
installation, the VM disk files hash as before, a copy of the disk boots either the old or the
new Engine, and re-running the same upgrade completes it. Every kill that leaves the disk in a
boot state (ESP entries, slot versions) not yet boot-checked in this session is booted, and so
are the first two random kills; random delays are counted from the moment the installer
prints its `probe` step (so Python start-up is not part of the window).
The same for the 4.0.0 -> 4.5.0 migration, before and after its point of no return. (Fresh
installs killed midway are covered by test_kill_fresh_install.py.)
Checkpoint kills stop the installer process alone (no child runs at a step boundary); random
kills stop either the process (a child mtools or mkfs call then finishes on its own, like a
write already handed to the kernel) or its whole process group (the child dies mid-write too,
like a power cut).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
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
from reference_builds.pytest_plugin import copy_sparse, vm_disk_digests

pytestmark = [pytest.mark.root, pytest.mark.slow]

UPGRADE_ANSWERS = (
    '[eula]\naccept = true\n[keyboard]\nlayout = "us"\n[existing]\naction = "upgrade"\n'
)
# The kernel releases a killed process's namespace, mounts and loop devices asynchronously:
# a bound for a release that never comes, generous so a loaded machine cannot trip it.
RELEASE_TIMEOUT = 60.0
# Boot states (ESP entries + slot versions) already booted in this session, by any worker (a
# file they share, `boot_claims`): a kill that leaves the disk in one of them would boot the
# same way, so only new states cost a boot (~10 s in TCG).
RANDOM_BOOTS = 2  # random kills booted whatever their state
RANDOM_BOOTED: list[str] = []
# Seconds from the `probe` step line to the end of an uninterrupted upgrade (per worker).
RUN_SECONDS: list[float] = []
PROBE_LINE = "] probe"
Record = Callable[[str, object], None]


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
) -> tuple[int, float]:
    """Run `engine-install --answers`; return (exit status, seconds after its probe line).

    `kill_after` counts from the moment the installer prints its `probe` step, i.e. when it
    is about to look at the disk, not from the fork (Python start-up takes ~0.2 s here).
    """
    env = dict(os.environ)
    env.pop(CRASH_ENV, None)
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    argv = [
        sys.executable,
        "-m",
        "commands.engine_install",
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
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None
    while line := proc.stdout.readline().decode(errors="replace"):
        if PROBE_LINE in line:
            break
    probed = time.monotonic()
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            if whole_group:  # a power cut: mkfs or mcopy die mid-write too
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    after_probe = time.monotonic() - probed
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"installer failed: {err.decode(errors='replace')}")
    return proc.returncode, after_probe


def _upgrade_plan(medium: Path, disk: Path) -> InstallPlan:
    return InstallPlan(medium, disk, InstallMode.UPGRADE, "5.0.0", eula_accepted=True)


@pytest.fixture(scope="session")
def boot_claims(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's list of boot states that booted: in the directory every xdist worker's
    base temp shares (one per session), or the base temp itself when there are no workers.
    Two workers meeting a new state at once may both boot it; no state is skipped unbooted."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return root / "kill-upgrade-booted-states.jsonl"


def _booted_states(claims: Path, add: tuple[object, ...] | None = None) -> list[str]:
    """The states booted so far in this session (any worker), after adding `add`; under the
    file's lock, so two workers never interleave their lines."""
    with claims.open("a+") as shared:
        fcntl.flock(shared, fcntl.LOCK_EX)  # released when the file closes
        shared.seek(0)
        lines = shared.read().splitlines()
        if add is not None and json.dumps(add) not in lines:
            shared.write(json.dumps(add) + "\n")
            lines.append(json.dumps(add))
        return lines


def _boot_state(found: Installation) -> tuple[object, ...]:
    """What decides how the disk boots: the ESP entries and the version in each slot."""
    entries = tuple(e.file_name for e in found.boot_entries)
    return entries, tuple(sorted((slot.value, v) for slot, v in found.slots.items()))


def _boots_old_or_new(disk: Path, label: str) -> None:
    from disk_images.boot import boot_installed_disk

    copy = copy_sparse(disk, disk.with_name(disk.name + ".boot"))
    try:
        result = boot_installed_disk(copy, timeout=90)
        running = result.running
        assert running is not None, f"{label}: no Engine booted: {result.attempts}"
        assert running.version in ("4.5.0", "5.0.0"), running
    finally:
        copy.unlink()


def _check_after_kill(
    disk: Path,
    medium: Path,
    vm_before: dict[str, str],
    label: str,
    record: Record,
    claims: Path,
    *,
    force_boot: bool = False,
) -> None:
    """The checks after one kill; the verdict goes to the terminal summary (conftest)."""
    ok = False
    booted = False
    try:
        _wait_released(disk)
        found = probe(disk)
        assert isinstance(found, Installation), f"{label}: probe lost the installation: {found}"
        assert found.version in ("4.5.0",), found.version
        assert vm_disk_digests(disk) == vm_before, f"{label}: a VM disk changed"
        state = _boot_state(found)
        new_state = json.dumps(state) not in _booted_states(claims)
        if shutil.which("qemu-system-x86_64") and (new_state or force_boot):
            _boots_old_or_new(disk, label)
            _booted_states(claims, add=state)  # only once it booted: a failure is retried
            booted = True
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
        verdict = {"point": label, "how": "SIGKILL", "survived": ok, "booted": booted}
        record("kill_upgrade", json.dumps(verdict))


@pytest.mark.parametrize("checkpoint", [c.value for c in UPGRADE_STEPS])
def test_upgrade_killed_at_checkpoint(
    checkpoint: str,
    tmp_path: Path,
    engine_disk: Callable[..., Path],
    engine_medium: Callable[[str], Path],
    record_property: Record,
    boot_claims: Path,
) -> None:
    disk = engine_disk("4.5.0", size="2G")
    medium = engine_medium("5.0.0")
    vm_before = vm_disk_digests(disk)
    answers = tmp_path / "answers.toml"
    answers.write_text(UPGRADE_ANSWERS)
    status, _ = _run_installer(medium, disk, answers, crash_at=checkpoint)
    assert status == -signal.SIGKILL, "the crash seam did not fire"
    _check_after_kill(
        disk, medium, vm_before, f"checkpoint {checkpoint}", record_property, boot_claims
    )


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(fraction=st.floats(min_value=0.02, max_value=0.98), whole_group=st.booleans())
def test_upgrade_killed_at_random_moments(
    fraction: float,
    whole_group: bool,
    tmp_path: Path,
    engine_disk: Callable[..., Path],
    engine_medium: Callable[[str], Path],
    record_property: Record,
    boot_claims: Path,
) -> None:
    disk = engine_disk("4.5.0", size="2G")
    medium = engine_medium("5.0.0")
    if not RUN_SECONDS:
        # How long an uninterrupted run takes from its probe step to its end (the faster of
        # two, the first one warms caches); the kills land inside that window.
        for attempt in range(2):
            timed = copy_sparse(disk, tmp_path / f"timed-{attempt}.img")
            RUN_SECONDS.append(_run_installer(medium, timed, _answers(tmp_path))[1])
            timed.unlink()
        RUN_SECONDS.sort()
    delay = fraction * RUN_SECONDS[0]
    vm_before = vm_disk_digests(disk)
    status, _ = _run_installer(
        medium, disk, _answers(tmp_path), kill_after=delay, whole_group=whole_group
    )
    what = "process group" if whole_group else "process"
    label = f"random: {what} killed {delay:.2f} s after probe"
    if status == 0:
        verdict = {"point": label, "how": "finished before the kill", "survived": True}
        record_property("kill_upgrade", json.dumps(verdict))
        disk.unlink()
        return
    force_boot = len(RANDOM_BOOTED) < RANDOM_BOOTS
    if force_boot:
        RANDOM_BOOTED.append(label)
    _check_after_kill(
        disk, medium, vm_before, label, record_property, boot_claims, force_boot=force_boot
    )
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
    checkpoint: Checkpoint,
    tmp_path: Path,
    engine_disk: Callable[..., Path],
    engine_medium: Callable[[str], Path],
    record_property: Record,
) -> None:
    """4.0.0 MBR -> 4.5.0 GPT killed before and after its point of no return."""
    assert checkpoint in MIGRATE_STEPS
    disk = engine_disk("4.0.0", size="1G")
    medium = engine_medium("4.5.0")
    vm_before = vm_disk_digests(disk)
    ok = False
    booted = False
    try:
        status, _ = _run_installer(medium, disk, _answers(tmp_path), crash_at=checkpoint.value)
        assert status == -signal.SIGKILL
        _wait_released(disk)
        found = probe(disk)
        assert isinstance(found, Installation), found
        assert found.version == "4.0.0", found
        switched = MIGRATE_STEPS.index(checkpoint) > MIGRATE_STEPS.index(Checkpoint.SWITCH_TABLE)
        assert found.layout.value == ("gpt-ab" if switched else "mbr")
        assert vm_disk_digests(disk) == vm_before
        if checkpoint is Checkpoint.SET_STATUS and shutil.which("qemu-system-x86_64"):
            from disk_images.boot import boot_installed_disk

            copy = copy_sparse(disk, disk.with_name(disk.name + ".boot"))
            running = boot_installed_disk(copy, timeout=90).running
            assert running is not None
            assert running.version in ("4.0.0", "4.5.0")
            copy.unlink()
            booted = True
        plan = InstallPlan(medium, disk, InstallMode.UPGRADE, "4.5.0", eula_accepted=True)
        assert run_plan(plan).upgrade_status == UpgradeStatus.INSTALLED_REBOOT_REQUIRED.value
        after = probe(disk)
        assert isinstance(after, Installation)
        assert after.layout.value == "gpt-ab"
        assert after.slots == {Slot.A: "4.0.0", Slot.B: "4.5.0"}
        assert vm_disk_digests(disk) == vm_before
        _wait_released(disk)
        ok = True
    finally:
        verdict = {
            "point": f"checkpoint {checkpoint.value}",
            "how": "SIGKILL",
            "survived": ok,
            "booted": booted,
        }
        record_property("kill_migration", json.dumps(verdict))
