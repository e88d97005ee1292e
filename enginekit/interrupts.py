"""Ctrl-C held back while a front end is between two safe points, then raised there.

A SIGINT that lands while Python runs a finalizer, or while a prompt library is still setting
up its own handler, is printed as "Exception ignored ... KeyboardInterrupt" and lost. Inside
`deferred_interrupt()` a SIGINT only marks the interruption as pending; leaving the block
raises KeyboardInterrupt at that one clean point (a prompt may also check `pending` as soon as
it runs, and end at once). Main thread only, as Python's signal handlers are.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class PendingInterrupt:
    """Whether a Ctrl-C arrived while it was held back."""

    def __init__(self) -> None:
        self.pending = False

    def _record(self, _signum: int, _frame: FrameType | None) -> None:
        self.pending = True


@contextmanager
def deferred_interrupt() -> Iterator[PendingInterrupt]:
    """Hold SIGINT back for the body; raise KeyboardInterrupt after it if one arrived."""
    state = PendingInterrupt()
    previous = signal.signal(signal.SIGINT, state._record)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)
    if state.pending:
        raise KeyboardInterrupt
