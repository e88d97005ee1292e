"""The live installer's events for machines: one JSON object per line on the second serial port.

Each object has `event` and `t`, the seconds since power-on (the first field of /proc/uptime),
plus what the event carries (`screen` for a screen, `step` and `fraction` for a step of the
engine, `error` for a failure). The port is put in raw mode, so a line ends in "\\n" alone. A
computer without the port still installs: the events are then dropped.

UEFI firmware and its boot menu draw on every serial port, this one included, so what a
harness reads there starts with their output: `read_events` keeps the event lines only.
"""

from __future__ import annotations

import json
import os
import termios
import tty
from pathlib import Path
from types import TracebackType
from typing import Any

EVENTS_PORT = Path("/dev/ttyS1")
UPTIME = Path("/proc/uptime")


def seconds_since_power_on(uptime: Path = UPTIME) -> float:
    try:
        return round(float(uptime.read_text().split()[0]), 2)
    except (OSError, ValueError, IndexError):
        return 0.0


class EventPort:
    """`with EventPort(path) as events: events.emit("booted")`; a missing port drops events."""

    def __init__(self, path: Path = EVENTS_PORT, uptime: Path = UPTIME) -> None:
        self.path = path
        self.uptime = uptime
        self._fd: int | None = None

    def __enter__(self) -> EventPort:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC | os.O_APPEND)
        except OSError:
            return self
        if os.isatty(fd):
            try:
                tty.setraw(fd, termios.TCSANOW)
            except termios.error:
                pass  # a port that takes no settings still carries the bytes
        self._fd = fd
        self._write(b"\n")  # the firmware's output before us does not end in a newline
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def emit(self, event: str, **fields: object) -> None:
        line = json.dumps(
            {"event": event, "t": seconds_since_power_on(self.uptime), **fields},
            sort_keys=False,
            ensure_ascii=True,
        )
        self._write((line + "\n").encode("ascii"))

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            return
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError:
            self._fd = None  # the port went away: the install goes on without events


def read_events(data: bytes) -> list[dict[str, Any]]:
    """The events in what was read from the port, in order: each line that is a JSON object
    with an `event`; the firmware's output around them is left out."""
    events = []
    for raw in data.split(b"\n"):
        line = raw.strip()
        if not line.startswith(b'{"event": '):
            continue
        try:
            found = json.loads(line)
        except ValueError:
            continue
        if isinstance(found, dict):
            events.append(found)
    return events


def describe_event(event: dict[str, Any]) -> str:
    """One event as a line for people: the seconds since power-on, its name, its fields
    (lists, such as the disks offered, and a screen's whole text left out)."""
    detail = " ".join(
        f"{k}={v}"
        for k, v in event.items()
        if k not in ("event", "t", "text") and not isinstance(v, list)
    )
    return f"{float(event.get('t', 0.0)):7.1f} s  {event.get('event')} {detail}".rstrip()
