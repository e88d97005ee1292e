"""One program shown on several terminals at once: the live installer on the serial console
and on the computer's screen.

`mirrored` runs a program on a new pseudo-terminal (its controlling terminal, so Ctrl-C is
SIGINT there when the program is not in raw mode) and joins it to each given terminal, in raw
mode while it runs: what the program writes goes to every terminal, what is typed on any of
them goes to the program. The pseudo-terminal's size is the smallest that every terminal
shows whole. A terminal that fails (it went away) is dropped; the others go on. The program's
exit status is returned once it has exited and everything it wrote was passed on.
"""

from __future__ import annotations

import errno
import fcntl
import os
import selectors
import struct
import termios
from collections.abc import Sequence

from enginekit.process import StrPath, require_tool, spawn
from enginekit.terminal import TerminalSize, raw_mode, reported_size, write_all


def common_size(fds: Sequence[int], fallback: TerminalSize) -> TerminalSize:
    """The largest size every terminal on `fds` shows whole; `fallback` bounds it and stands
    in for the terminals that cannot say theirs."""
    sizes = [s for s in (reported_size(fd) for fd in fds) if s is not None]
    return TerminalSize(
        min([fallback.columns, *(s.columns for s in sizes)]),
        min([fallback.rows, *(s.rows for s in sizes)]),
    )


def _set_size(fd: int, size: TerminalSize) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size.rows, size.columns, 0, 0))


def mirrored(argv: Sequence[StrPath], terminals: Sequence[int], size: TerminalSize) -> int:
    """Run `argv` on a pseudo-terminal of `size` joined to `terminals` (see the module
    docstring); its exit status."""
    setsid = require_tool("setsid", "util-linux")
    master, slave = os.openpty()
    try:
        _set_size(slave, size)
        # setsid --ctty makes the pseudo-terminal the program's controlling terminal.
        child = spawn([setsid, "--ctty", "--wait", *argv], stdin=slave, stdout=slave, stderr=slave)
    finally:
        os.close(slave)
    live = list(terminals)
    try:
        with raw_mode(live), selectors.DefaultSelector() as selector:
            selector.register(master, selectors.EVENT_READ)
            for fd in live:
                selector.register(fd, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    fd = int(key.fd)
                    if fd == master:
                        try:
                            data = os.read(master, 65536)
                        except OSError as exc:  # EIO: the program and its children closed it
                            if exc.errno != errno.EIO:
                                raise
                            data = b""
                        if not data:
                            return child.wait()
                        for terminal in list(live):
                            try:
                                write_all(terminal, data)
                            except OSError:
                                live.remove(terminal)
                                selector.unregister(terminal)
                        continue
                    try:
                        keys = os.read(fd, 1024)
                    except OSError:
                        keys = b""
                    if not keys:  # that terminal went away; the others go on
                        live.remove(fd)
                        selector.unregister(fd)
                        continue
                    write_all(master, keys)
    finally:
        os.close(master)
        if child.poll() is None:
            child.kill()
            child.wait()
