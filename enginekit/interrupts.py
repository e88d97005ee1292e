"""Ctrl-C held back while a front end is between two safe points, then raised there.

A SIGINT that lands while Python runs a finalizer, or while a prompt library is still setting
up its own handler, is printed as "Exception ignored ... KeyboardInterrupt" and lost. Inside
`deferred_interrupt()` a SIGINT only marks the interruption as pending; leaving the block
raises KeyboardInterrupt at that one clean point (a prompt may also check `pending` as soon as
it runs, and end at once). Main thread only, as Python's signal handlers are.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import NoReturn

_STARTING = b"error: interrupted while starting; nothing was done\n"


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


def _interrupted_while_starting(_signum: int, _frame: FrameType | None) -> NoReturn:
    # Nothing is set up yet (the program is still importing or parsing its arguments), so
    # there is nothing to release: one line and the Ctrl-C status, not a traceback from
    # inside an import.
    os.write(2, _STARTING)
    os._exit(130)


def quiet_interrupt_while_starting(programs: frozenset[str]) -> None:
    """When this process is one of `programs` (a console script, or `python -m` of one),
    a Ctrl-C before `take_over_interrupts` ends it with one line and status 130. Not in a
    process that merely imports the commands (a test run keeps its own Ctrl-C)."""
    started_as = sys.argv[0] if sys.argv else ""
    if os.path.basename(started_as) not in programs and started_as != "-m":
        return
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted_while_starting)


def take_over_interrupts() -> None:
    """From here a Ctrl-C is a KeyboardInterrupt again, for the command to release what it
    set up (its `finally` blocks and context managers run)."""
    if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)
