"""Small, root-free tests of the engine's parts: payload path checks, slot verification,
boot entry text, the step tracker and its crash seam."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from disk_images.layout import Slot
from disk_images.partition_files import DirectoryFiles
from installer.engine import bootloader
from installer.engine.checkpoints import CRASH_ENV, UPGRADE_STEPS, Checkpoint, StepTracker
from installer.engine.common import SlotVerificationFailed, SystemImage, verify_slot, write_slot
from installer.engine.payload import MediumRejected, SlotFile, safe_partition_path


@pytest.mark.parametrize(
    "path",
    ["", "/etc/passwd", "a/../../b", "a//b", "./a", "a\\b", "a\nb", "..", "a/."],
)
def test_paths_escaping_or_odd_are_refused(path: str) -> None:
    with pytest.raises(MediumRejected):
        safe_partition_path(path, "test")


def test_good_path_lands_inside() -> None:
    assert safe_partition_path("usr/lib/engine/engined", "t") == "/usr/lib/engine/engined"


def _image() -> SystemImage:
    data = b"#!/bin/sh\necho engined\n"
    entry = SlotFile("system/root/usr/bin/engined", "/usr/bin/engined", len(data), "0" * 64)
    return SystemImage("5.0.0", "5.0.0", ((entry, data),), b"kernel", b"initrd")


def test_verify_slot_catches_a_changed_file(tmp_path: Path) -> None:
    fs = DirectoryFiles(tmp_path, label="slot-b")
    image = _image()
    seen: list[float] = []
    write_slot(fs, image, Slot.B, seen.append)
    assert seen == [1.0]
    verify_slot(fs, image, Slot.B)
    (tmp_path / "usr/bin/engined").write_bytes(b"tampered")
    with pytest.raises(SlotVerificationFailed, match="reads back different"):
        verify_slot(fs, image, Slot.B)


def test_entry_text_boots_the_slot() -> None:
    text = bootloader.entry_text("5.0.0", Slot.B).decode()
    assert "linux /engine/b/vmlinuz" in text
    assert "initrd /engine/b/initrd.img" in text
    assert "engine.slot=B" in text
    assert "panic=-1" in text
    assert bootloader.new_entry(3, Slot.B, counting=True).file_name == "engine-3-b+1-0.conf"
    assert bootloader.new_entry(3, Slot.A, counting=False).file_name == "engine-3-a.conf"


def test_tracker_progress_is_monotonic() -> None:
    seen: list[tuple[str, float]] = []
    tracker = StepTracker(UPGRADE_STEPS, lambda step, fraction: seen.append((step, fraction)))
    for step in UPGRADE_STEPS:
        tracker.reach(step)
        tracker.advance(0.5)
        tracker.advance(1.0)
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert tracker.done == tuple(s.value for s in UPGRADE_STEPS)


def test_crash_seam_kills_the_process_at_the_named_checkpoint() -> None:
    code = (
        "from installer.engine.checkpoints import StepTracker, UPGRADE_STEPS\n"
        "t = StepTracker(UPGRADE_STEPS, lambda s, f: print(s, flush=True))\n"
        "[t.reach(s) for s in UPGRADE_STEPS]\n"
    )
    env = dict(os.environ, **{CRASH_ENV: Checkpoint.WRITE_SLOT.value})
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL
    printed = proc.stdout.split()
    assert printed[-1] == Checkpoint.MKFS.value  # killed on reaching write-slot, before it ran


@pytest.mark.parametrize(
    ("holders", "expected"),
    [
        (("/dev/loop3",), "detach its loop devices (losetup -d), then try again"),
        (
            ("another EngineKit process (boot/install)", "a QEMU virtual machine"),
            "wait for the other engine-disk boot or engine-install to finish; "
            "shut down the virtual machine using it, then try again",
        ),
    ],
)
def test_in_use_hint_says_what_to_do_about_each_holder(
    holders: tuple[str, ...], expected: str
) -> None:
    from installer.engine.run import _in_use_hint

    assert _in_use_hint(holders) == expected
