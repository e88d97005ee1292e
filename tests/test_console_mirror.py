"""The console mirror on real pseudo-terminals: two stand in for the live system's serial
console and its screen (the test holds their far ends, as a person at each would). What the
program writes reaches both, a line typed on either answers it, its size is the one both show
whole, and its exit status comes back; a terminal that goes away leaves the other working."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import sys
import termios
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from enginekit.console_mirror import common_size, mirrored
from enginekit.terminal import TerminalSize

# Prints its terminal's size and whether it has one, asks for a line, echoes it, exits 3.
PROGRAM = """
import os, sys
size = os.get_terminal_size(0)
print(f"size {size.columns}x{size.lines} ctty {os.ttyname(0) == os.ttyname(sys.stdout.fileno())}")
print("name?", flush=True)
line = sys.stdin.readline().strip()
print(f"hello {line}", flush=True)
raise SystemExit(3)
"""


@dataclass
class Terminal:
    """A pseudo-terminal: `device` is what the mirror is given, `person` the other end."""

    device: int
    person: int
    seen: bytearray = field(default_factory=bytearray)

    def read_until(self, text: bytes, timeout: float = 20.0) -> bytes:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} never came; saw {bytes(self.seen)!r}"
            ready, _, _ = select.select([self.person], [], [], left)
            if ready:
                try:
                    self.seen += os.read(self.person, 4096)
                except OSError:
                    break  # the mirror let go of the device end
        return bytes(self.seen)


@contextmanager
def terminal(columns: int = 0, rows: int = 0) -> Iterator[Terminal]:
    """A pseudo-terminal that says it is `columns` x `rows`, or (0) cannot say, as a serial
    port."""
    person, device = os.openpty()
    if columns:
        fcntl.ioctl(device, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    try:
        yield Terminal(device, person)
    finally:
        os.close(device)
        os.close(person)


def run_in_thread(
    terminals: list[Terminal], size: TerminalSize
) -> tuple[threading.Thread, list[int]]:
    status: list[int] = []
    thread = threading.Thread(
        target=lambda: status.append(
            mirrored([sys.executable, "-c", PROGRAM], [t.device for t in terminals], size)
        ),
        daemon=True,
    )
    thread.start()
    return thread, status


def test_both_terminals_show_the_program_and_either_answers_it() -> None:
    with terminal() as serial, terminal(100, 37) as screen:
        size = common_size([serial.device, screen.device], fallback=TerminalSize(80, 24))
        assert size == TerminalSize(80, 24)  # the serial one cannot say; the screen is larger
        thread, status = run_in_thread([serial, screen], size)
        for shown in (serial, screen):
            shown.read_until(b"name?")
            assert b"size 80x24 ctty True" in shown.seen
        os.write(screen.person, b"trainer\r")  # raw mode: Enter is a carriage return
        for shown in (serial, screen):
            shown.read_until(b"hello trainer")
        thread.join(20)
        assert status == [3]
        # While the program ran the terminals were raw; now they are as they were.
        assert termios.tcgetattr(serial.device)[3] & termios.ICANON


def test_a_small_screen_sets_the_size() -> None:
    with terminal() as serial, terminal(40, 10) as screen:
        assert common_size([serial.device, screen.device], TerminalSize(80, 24)) == (
            TerminalSize(40, 10)
        )


def test_a_terminal_that_goes_away_leaves_the_other_working() -> None:
    with terminal() as serial:
        person, device = os.openpty()
        gone = Terminal(device, person)
        thread, status = run_in_thread([serial, gone], TerminalSize(80, 24))
        gone.read_until(b"name?")
        os.close(gone.person)  # that screen's end is gone: reads fail on the device end
        serial.read_until(b"name?")
        os.write(serial.person, b"technician\r")
        serial.read_until(b"hello technician")
        thread.join(20)
        assert status == [3]
        os.close(gone.device)


@pytest.mark.parametrize("columns", [0, 120])
def test_the_fallback_bounds_the_size(columns: int) -> None:
    with terminal(columns, 50 if columns else 0) as only:
        assert common_size([only.device], TerminalSize(80, 24)) == TerminalSize(80, 24)
