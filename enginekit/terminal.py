"""Terminals as the installer's screens, the console relay and the console mirror use them:
their size in characters, raw mode, and writing all of a buffer.

A serial console cannot say its size (it reports 0x0), so $COLUMNS and $LINES, when set, tell
it, and a terminal that says nothing is taken to be 80x24.
"""

from __future__ import annotations

import contextlib
import os
import termios
import tty
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

# What a terminal that does not know its size (a serial console says 0x0) is taken to be.
DEFAULT_COLUMNS = 80
DEFAULT_ROWS = 24


@dataclass(frozen=True)
class TerminalSize:
    columns: int
    rows: int

    @staticmethod
    def known_or_default(columns: int, rows: int) -> TerminalSize:
        return TerminalSize(columns or DEFAULT_COLUMNS, rows or DEFAULT_ROWS)


def reported_size(fd: int) -> TerminalSize | None:
    """What the terminal on `fd` says its size is, or None when it cannot say."""
    try:
        reported = os.get_terminal_size(fd)
    except OSError:
        return None
    if reported.columns <= 0 or reported.lines <= 0:
        return None
    return TerminalSize(reported.columns, reported.lines)


def size_from_terminal(fd: int) -> TerminalSize:
    """The terminal's size: $COLUMNS/$LINES when set (a serial console cannot say its size,
    so the live system may be told it), else what the terminal reports, else 80x24."""
    reported = reported_size(fd)
    columns, rows = (reported.columns, reported.rows) if reported else (0, 0)

    def from_env(name: str, fallback: int) -> int:
        value = os.environ.get(name, "")
        return int(value) if value.isdigit() and int(value) > 0 else fallback

    return TerminalSize.known_or_default(from_env("COLUMNS", columns), from_env("LINES", rows))


@contextlib.contextmanager
def raw_mode(fds: Sequence[int]) -> Iterator[None]:
    """The terminals on `fds` in raw mode for the block, then as they were; a descriptor that
    is not a terminal, or one that went away, is left alone."""
    saved: list[tuple[int, list[Any]]] = []
    try:
        for fd in fds:
            with contextlib.suppress(termios.error):
                saved.append((fd, termios.tcgetattr(fd)))
                tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        for fd, attributes in saved:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(fd, termios.TCSADRAIN, attributes)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` to `fd` (os.write may take only part of it)."""
    while data:
        data = data[os.write(fd, data) :]
