"""`deferred_interrupt()`: a Ctrl-C that lands inside a finalizer (where Python prints
"Exception ignored ... KeyboardInterrupt" and drops it) is held back and raised once the block
ends. Real SIGINTs sent to this process."""

from __future__ import annotations

import gc
import os
import signal

import pytest

from enginekit.interrupts import deferred_interrupt


class InterruptedWhileCollected:
    """An object whose finalizer is where the Ctrl-C arrives."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # bytecodes for the signal handler to run on
            pass


def collect_one() -> None:
    InterruptedWhileCollected()
    gc.collect()


def test_a_ctrl_c_in_a_finalizer_is_raised_after_the_block() -> None:
    reached_end_of_block = False
    with pytest.raises(KeyboardInterrupt), deferred_interrupt() as held:  # noqa: PT012 - the interrupt must surface at the block's end, after these lines
        collect_one()
        assert held.pending
        reached_end_of_block = True
    assert reached_end_of_block
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_without_a_ctrl_c_the_block_ends_normally() -> None:
    with deferred_interrupt() as held:
        pass
    assert not held.pending
