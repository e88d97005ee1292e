"""A person at a terminal on a QEMU machine's serial console, and a recording of it.

`relay` joins the user's terminal (raw mode, restored on the way out) to the machine's console
socket (`BootSpec.console_socket`) until the machine stops, the user presses Ctrl-] (detach:
the caller stops the machine) or Ctrl-C, or the terminal goes away. Everything the console
prints can also go to an asciicast v2 file (`CastRecorder`), the format `asciinema play`
replays: a JSON header line, then one `[seconds, "o", text]` line per piece of output.
"""

from __future__ import annotations

import codecs
import enum
import json
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType

from enginekit.terminal import raw_mode, write_all

DETACH = 0x1D  # Ctrl-]: as telnet's escape, it leaves the console
INTERRUPT = 0x03  # Ctrl-C, which raw mode delivers as a byte


class RelayEnd(enum.StrEnum):
    EXITED = "exited"  # the machine stopped (powered off, rebooted with -no-reboot)
    DETACHED = "detached"  # Ctrl-]
    INTERRUPTED = "interrupted"  # Ctrl-C
    HANGUP = "hangup"  # the terminal closed


class CastRecorder:
    """An asciicast v2 file being written; the caller made sure `path` is a new file."""

    def __init__(self, path: Path, width: int, height: int, title: str) -> None:
        self.path = path
        self._out = path.open("x", encoding="utf-8")
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._started = time.monotonic()
        header = {
            "version": 2,
            "width": width,
            "height": height,
            "timestamp": int(time.time()),
            "title": title,
            "env": {"TERM": os.environ.get("TERM", "xterm")},
        }
        self._out.write(json.dumps(header) + "\n")

    def output(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if text:
            at = round(time.monotonic() - self._started, 6)
            self._out.write(json.dumps([at, "o", text]) + "\n")

    def __enter__(self) -> CastRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.output(b"")
        self._out.close()


class _HangUp(Exception):
    pass


def _hang_up(_signum: int, _frame: FrameType | None) -> None:
    raise _HangUp


def _connect(path: Path, running: Callable[[], bool]) -> socket.socket | None:
    """Connect to the console socket QEMU is creating; None when the machine stopped first."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    while True:
        try:
            sock.connect(str(path))
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            if not running():
                sock.close()
                return None
            time.sleep(0.02)


def relay(
    console: Path,
    running: Callable[[], bool],
    *,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
    recorder: CastRecorder | None = None,
) -> RelayEnd:
    """Join the terminal to the console until one side ends; say which and how."""
    sock = _connect(console, running)
    if sock is None:
        return RelayEnd.EXITED
    previous = signal.signal(signal.SIGHUP, _hang_up)
    try:
        with raw_mode([stdin_fd]), selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ, "console")
            selector.register(stdin_fd, selectors.EVENT_READ, "terminal")
            while True:
                for key, _ in selector.select(timeout=0.5):
                    if key.data == "console":
                        data = sock.recv(65536)
                        if not data:
                            return RelayEnd.EXITED
                        if recorder is not None:
                            recorder.output(data)
                        write_all(stdout_fd, data)
                        continue
                    keys = os.read(stdin_fd, 1024)
                    if not keys:
                        return RelayEnd.HANGUP
                    if DETACH in keys:
                        return RelayEnd.DETACHED
                    if INTERRUPT in keys:
                        return RelayEnd.INTERRUPTED
                    sock.sendall(keys)
                if not running():
                    return RelayEnd.EXITED
    except _HangUp:
        return RelayEnd.HANGUP
    except OSError:
        # The terminal went away under us (EIO on a closed pty), or the socket did.
        return RelayEnd.HANGUP if running() else RelayEnd.EXITED
    finally:
        signal.signal(signal.SIGHUP, previous)
        sock.close()
