"""The named steps of an install or upgrade, progress reporting, and the crash seam.

Every run of the engine walks a fixed list of checkpoints; reaching one reports progress and
records it in the report. The test seam `ENGINEKIT_CRASH_AT=<checkpoint>` makes the process
SIGKILL itself the moment it reaches that checkpoint (before the step writes anything), so the
interruption harness of issue 6 can stop an upgrade at every step boundary for real: no
finally-blocks, no cleanup, exactly like a power cut. Its gentle twin
`ENGINEKIT_INTERRUPT_AT=<checkpoint>` (also a test seam only) raises KeyboardInterrupt there
instead, as a Ctrl-C at that moment would, so the Ctrl-C messages can be tested.
"""

from __future__ import annotations

import enum
import os
import signal
from collections.abc import Sequence

from installer.plan import ProgressCallback

CRASH_ENV = "ENGINEKIT_CRASH_AT"
INTERRUPT_ENV = "ENGINEKIT_INTERRUPT_AT"  # test seam: a Ctrl-C at this checkpoint


class Checkpoint(enum.StrEnum):
    """A step boundary. The value is the name the harness passes in ENGINEKIT_CRASH_AT."""

    VERIFY_MEDIUM = "verify-medium"
    PROBE = "probe"
    PARTITION = "partition"
    MKFS = "mkfs"
    MARK_SIGNALLED = "mark-signalled"
    RETIRE_ENTRY = "retire-entry"
    WRITE_SLOT = "write-slot"
    VERIFY_SLOT = "verify-slot"
    INSTALL_BOOTLOADER = "install-bootloader"
    WRITE_ESP_KERNEL = "write-esp-kernel"
    WRITE_BOOT_ENTRY = "write-boot-entry"
    WRITE_CONFIG = "write-config"
    UPDATE_VMS = "update-vms"
    SWITCH_TABLE = "switch-table"
    SET_STATUS = "set-status"
    DONE = "done"

    @property
    def weight(self) -> float:
        """Rough share of a run's time, so the progress bar moves at a fair pace."""
        return _WEIGHTS.get(self, 1.0)


_WEIGHTS = {
    Checkpoint.VERIFY_MEDIUM: 6.0,
    Checkpoint.MKFS: 3.0,
    Checkpoint.WRITE_SLOT: 6.0,
    Checkpoint.VERIFY_SLOT: 3.0,
    Checkpoint.WRITE_ESP_KERNEL: 3.0,
    Checkpoint.DONE: 0.0,
}

# The order each kind of run goes through; the harness iterates these.
FRESH_STEPS: tuple[Checkpoint, ...] = (
    Checkpoint.VERIFY_MEDIUM,
    Checkpoint.PROBE,
    Checkpoint.PARTITION,
    Checkpoint.MKFS,
    Checkpoint.WRITE_SLOT,
    Checkpoint.VERIFY_SLOT,
    Checkpoint.INSTALL_BOOTLOADER,
    Checkpoint.WRITE_ESP_KERNEL,
    Checkpoint.WRITE_BOOT_ENTRY,
    Checkpoint.WRITE_CONFIG,
    Checkpoint.SET_STATUS,
    Checkpoint.DONE,
)

UPGRADE_STEPS: tuple[Checkpoint, ...] = (
    Checkpoint.VERIFY_MEDIUM,
    Checkpoint.PROBE,
    Checkpoint.MARK_SIGNALLED,
    Checkpoint.RETIRE_ENTRY,
    Checkpoint.MKFS,
    Checkpoint.WRITE_SLOT,
    Checkpoint.VERIFY_SLOT,
    Checkpoint.WRITE_ESP_KERNEL,
    Checkpoint.WRITE_CONFIG,
    Checkpoint.UPDATE_VMS,
    Checkpoint.WRITE_BOOT_ENTRY,
    Checkpoint.SET_STATUS,
    Checkpoint.DONE,
)


# 4.0.0 MBR -> 4.5.0 GPT in place (installer.engine.migrate).
MIGRATE_STEPS: tuple[Checkpoint, ...] = (
    Checkpoint.VERIFY_MEDIUM,
    Checkpoint.PROBE,
    Checkpoint.MARK_SIGNALLED,
    Checkpoint.MKFS,
    Checkpoint.WRITE_SLOT,
    Checkpoint.VERIFY_SLOT,
    Checkpoint.INSTALL_BOOTLOADER,
    Checkpoint.WRITE_ESP_KERNEL,
    Checkpoint.WRITE_CONFIG,
    Checkpoint.UPDATE_VMS,
    Checkpoint.WRITE_BOOT_ENTRY,
    Checkpoint.SWITCH_TABLE,
    Checkpoint.SET_STATUS,
    Checkpoint.DONE,
)


def crash_if_asked(checkpoint: Checkpoint) -> None:
    """The test seams: SIGKILL ourselves if ENGINEKIT_CRASH_AT names this checkpoint, act as
    a Ctrl-C if ENGINEKIT_INTERRUPT_AT does."""
    if os.environ.get(CRASH_ENV) == checkpoint.value:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(INTERRUPT_ENV) == checkpoint.value:
        raise KeyboardInterrupt


class StepTracker:
    """Walks a run's checkpoints: crash seam, progress callback, list of steps done."""

    def __init__(self, steps: Sequence[Checkpoint], progress: ProgressCallback | None) -> None:
        self._steps = tuple(steps)
        self._progress = progress
        self._total = sum(s.weight for s in self._steps) or 1.0
        self._done: list[str] = []
        self._current: Checkpoint | None = None

    def use_steps(self, steps: Sequence[Checkpoint]) -> None:
        """Switch to another list once the kind of run is known (e.g. a migration)."""
        self._steps = tuple(steps)
        self._total = sum(s.weight for s in self._steps) or 1.0

    @property
    def done(self) -> tuple[str, ...]:
        return tuple(self._done)

    def _weight_before(self, checkpoint: Checkpoint) -> float:
        before = 0.0
        for step in self._steps:
            if step is checkpoint:
                break
            before += step.weight
        return before

    def reach(self, checkpoint: Checkpoint) -> None:
        """Mark the previous step done and start `checkpoint`."""
        if self._current is not None:
            self._done.append(self._current.value)
        crash_if_asked(checkpoint)
        self._current = checkpoint
        if self._progress is not None:
            self._progress(checkpoint.value, self._weight_before(checkpoint) / self._total)
        if checkpoint is Checkpoint.DONE:
            self._done.append(checkpoint.value)
            self._current = None

    def advance(self, fraction_of_step: float) -> None:
        """Progress inside the current (long) step, 0..1."""
        if self._progress is None or self._current is None:
            return
        # Same summation order as reach(): the end of one step equals the start of the next.
        done = self._weight_before(self._current) + self._current.weight * min(
            1.0, max(0.0, fraction_of_step)
        )
        self._progress(self._current.value, min(1.0, done / self._total))
