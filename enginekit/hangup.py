"""A closed terminal (SIGHUP): the command stops as after Ctrl-C, releasing what it set up, and
what it still prints goes to its log or nowhere, never to the dead terminal (where every
write fails with EIO, which would turn a clean stop into a crash)."""

from __future__ import annotations

import os
import signal
from types import FrameType

# Which of stdin, stdout and stderr were the terminal when the command started.
_terminal_fds: list[int] = []


def watch_for_hangup() -> None:
    """Remember which standard streams are the terminal, and make a SIGHUP a KeyboardInterrupt,
    unless the command was started under nohup (which ignores SIGHUP: that is kept)."""
    _terminal_fds[:] = [fd for fd in (0, 1, 2) if os.isatty(fd)]
    if signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:
        signal.signal(signal.SIGHUP, _hung_up)


def _hung_up(_signum: int, _frame: FrameType | None) -> None:
    leave_closed_terminal()
    raise KeyboardInterrupt


def leave_closed_terminal() -> None:
    """Point the streams that were the terminal away from it: stdout to stderr when stderr is
    not the terminal (a log keeps the command's last lines), the rest to /dev/null."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in _terminal_fds:
            if fd == 1 and 2 not in _terminal_fds:
                os.dup2(2, 1)
            else:
                os.dup2(devnull, fd)
    finally:
        os.close(devnull)
    _terminal_fds.clear()
