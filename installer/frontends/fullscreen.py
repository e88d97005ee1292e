"""The installer's screens drawn whole on a terminal: each one clears and redraws with a title
bar, its text, its choices and a footer with the keys, at whatever size the terminal has.

`ScreenTerminal` is the terminal (input and output descriptors, and how its size is read);
`ScreenPrompter` draws `installer.frontends.layout` frames on it and reads keys (decoded by
prompt_toolkit's VT100 parser). The terminal is in raw mode while a screen waits for keys, so
Ctrl-C arrives as a key and ends the run as a Ctrl-C at a prompt does; during the install it
is back in its normal mode and Ctrl-C is SIGINT again. The size is read again on every draw
and a SIGWINCH redraws at once.
"""

from __future__ import annotations

import codecs
import os
import select
import signal
import termios
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from prompt_toolkit.input.vt100_parser import Vt100Parser
from prompt_toolkit.key_binding.key_processor import KeyPress
from prompt_toolkit.keys import Keys

from enginekit.interrupts import PendingInterrupt
from enginekit.terminal import TerminalSize, size_from_terminal
from installer.frontends.layout import Body, Layout, RowStyle, body, compose
from installer.screens import Choice, View

if TYPE_CHECKING:
    from installer.frontends.api import Installer
    from installer.plan import InstallReport

# How long a lone ESC waits for the rest of an escape sequence before it is the Esc key.
ESCAPE_WAIT_SECONDS = 0.05

_STYLE = {
    RowStyle.BAR: "\x1b[7m",  # reverse video, the whole width
    RowStyle.SELECTED: "\x1b[1m",
    RowStyle.NOTICE: "\x1b[1;31m",
    RowStyle.TEXT: "",
}


@dataclass(frozen=True)
class ScreenTerminal:
    """A terminal to draw the screens on. `size` is asked before every draw; by default it
    is `size_from_terminal(output_fd)`."""

    input_fd: int
    output_fd: int
    size: Callable[[], TerminalSize] | None = None
    encoding: str = "utf-8"

    def current_size(self) -> TerminalSize:
        return self.size() if self.size is not None else size_from_terminal(self.output_fd)

    @staticmethod
    def usable(input_fd: int, output_fd: int, term: str | None) -> bool:
        """Whether screens can be drawn: both ends a terminal, and not a dumb one."""
        if term in (None, "", "dumb", "unknown"):
            return False
        return os.isatty(input_fd) and os.isatty(output_fd)


class _Resized(Exception):
    """Raised by the SIGWINCH handler while a screen waits for a key."""


RESIZED = "resized"


# The values of the two choices the installer loop adds (see `installer.frontends.interactive`).
BACK = "__back__"
QUIT = "__quit__"


class ScreenPrompter:
    """Screens drawn whole on a `ScreenTerminal` (see the module docstring)."""

    def __init__(self, terminal: ScreenTerminal) -> None:
        self._terminal = terminal
        self._view: View | None = None
        self._notice = ""
        self._keys: deque[KeyPress] = deque()
        self._parser = Vt100Parser(self._keys.append)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._waiting = False
        self._resized = False
        self._saved: list[Any] | None = None  # termios attributes, as tcgetattr gives them
        self._previous_winch: object = None

    # ---- the terminal ----

    def open(self) -> None:
        self._raw(True)
        try:
            self._previous_winch = signal.signal(signal.SIGWINCH, self._on_resize)
        except ValueError:  # not the main thread: no redraw on resize, the size is read per draw
            self._previous_winch = None
        self._write("\x1b[?25l")

    def close(self) -> None:
        """Give the terminal back as it was; one that went away (its window was closed) has
        nothing left to restore."""
        if os.isatty(self._terminal.output_fd):  # not once the streams left a closed one
            with suppress(OSError):
                self._write("\x1b[0m\x1b[?25h\r\n")
        if self._previous_winch is not None:
            signal.signal(signal.SIGWINCH, self._previous_winch)  # type: ignore[arg-type]
            self._previous_winch = None
        with suppress(termios.error):
            self._raw(False)

    def _raw(self, on: bool) -> None:
        fd = self._terminal.input_fd
        if on:
            if self._saved is None:
                self._saved = termios.tcgetattr(fd)
            mode = termios.tcgetattr(fd)
            mode[0] &= ~(termios.ICRNL | termios.IXON)
            mode[3] &= ~(termios.ECHO | termios.ICANON | termios.ISIG | termios.IEXTEN)
            mode[6][termios.VMIN] = 1
            mode[6][termios.VTIME] = 0
            termios.tcsetattr(fd, termios.TCSANOW, mode)
        elif self._saved is not None:
            termios.tcsetattr(fd, termios.TCSANOW, self._saved)
            self._saved = None

    @contextmanager
    def _normal_mode(self) -> Iterator[None]:
        """The terminal as it was (Ctrl-C is SIGINT) for the body: the install runs so."""
        self._raw(False)
        try:
            yield
        finally:
            self._raw(True)

    def _on_resize(self, _signum: int, _frame: FrameType | None) -> None:
        self._resized = True
        if self._waiting:
            raise _Resized

    def _write(self, text: str) -> None:
        data = text.encode(self._terminal.encoding, errors="replace")
        while data:
            written = os.write(self._terminal.output_fd, data)
            data = data[written:]

    def _read_key(self) -> KeyPress | str:
        """The next key, or RESIZED when the terminal changed size meanwhile."""
        fd = self._terminal.input_fd
        may_hold = False  # the parser holds the start of an escape sequence
        while not self._keys:
            if self._resized:
                self._resized = False
                return RESIZED
            self._waiting = True
            try:
                ready, _, _ = select.select([fd], [], [], ESCAPE_WAIT_SECONDS if may_hold else None)
            except _Resized:
                continue
            finally:
                self._waiting = False
            if not ready:
                self._parser.flush()
                may_hold = False
                continue
            try:
                data = os.read(fd, 1024)
            except OSError:  # EIO: the terminal was hung up
                data = b""
            if not data:  # the terminal went away: as if Ctrl-C had been pressed
                raise KeyboardInterrupt
            self._parser.feed(self._decoder.decode(data))
            may_hold = not self._keys
        return self._keys.popleft()

    def _draw(self, layout: Layout, cursor: tuple[int, int] | None = None) -> None:
        width = self._terminal.current_size().columns
        out = ["\x1b[0m\x1b[H\x1b[2J"]
        for number, row in enumerate(layout.rows):
            text = row.text.ljust(width) if row.style is RowStyle.BAR else row.text
            out.append(f"{_STYLE[row.style]}{text}\x1b[0m")
            if number < len(layout.rows) - 1:
                out.append("\r\n")
        if cursor is not None:
            out.append(f"\x1b[{cursor[0] + 1};{cursor[1] + 1}H\x1b[?25h")
        else:
            out.append("\x1b[?25l")
        self._write("".join(out))

    # ---- what the installer loop asks for ----

    def show(self, view: View) -> None:
        self._view = view
        self._notice = ""

    def say(self, line: str) -> None:
        self._notice = line.removeprefix("! ")

    def _keys_hint(self, *, back: bool, enter: str, move: bool) -> list[str]:
        keys = [enter]
        if move:
            keys.append("Up/Down: move")
        if back:
            keys.append("Esc: back")
        view = self._view
        keys.append("Ctrl-C: quit" if view is None or view.can_quit else "Ctrl-C: stop")
        return keys

    def choose(
        self, choices: Sequence[Choice], message: str, default: str | None, held: PendingInterrupt
    ) -> str:
        """The value of the choice taken with Enter ("__back__" for Esc where Back is one).
        On a screen to read to the end (the licence), Enter, Space and Down page on, and the
        choices can be taken only once every row of the text has been on the screen."""
        del message  # the heading and the text say what is asked
        view = self._view
        assert view is not None
        values = [c.value for c in choices]
        labels = [c.label for c in choices]
        selected = values.index(default) if default in values else 0
        back = BACK in values
        top = seen_to = 0  # seen_to: the body's rows shown so far, from the first, no gap
        unread = view.read_to_end
        while True:
            if held.pending:
                raise KeyboardInterrupt
            size = self._terminal.current_size()
            page = body(
                view.text, size.columns, notice=self._notice, labels=labels, selected=selected
            )
            enter = "Enter: next page" if unread else "Enter: select"
            keys = self._keys_hint(back=back, enter=enter, move=not unread)
            layout = compose(view.heading, page, top, keys, size)
            top = layout.top
            if top <= seen_to:
                seen_to = max(seen_to, top + layout.window)
            if unread and seen_to >= len(page.rows):
                unread = False  # the last row is on the screen: draw the keys that now apply
                continue
            self._draw(layout)
            key = self._read_key()
            if key == RESIZED:
                if unread:
                    top = seen_to = 0  # the text flowed anew: read it again from the top
                continue
            assert isinstance(key, KeyPress)
            action = _key_action(key)
            if action == "interrupt":
                raise KeyboardInterrupt
            if action == "back" and back:
                return BACK
            if action == "next-page" or (unread and action == "enter"):
                top += layout.window
            elif action == "previous-page":
                top = max(0, top - layout.window)
            elif unread and action in ("up", "down"):
                top = max(0, top + (1 if action == "down" else -1))
            elif action in ("up", "down"):
                selected = max(0, min(len(values) - 1, selected + (1 if action == "down" else -1)))
                first, after = page.spans[selected]
                if first < top:
                    top = first
                elif after > top + layout.window:
                    top = after - layout.window
            elif action == "enter" and not unread:
                return values[selected]

    def field(self, prompt: str, secret: bool, default: str, held: PendingInterrupt) -> str | None:
        """The text typed for `prompt` (Enter), or None when Esc went back to the choices."""
        view = self._view
        assert view is not None
        typed = "" if secret else default
        while True:
            if held.pending:
                raise KeyboardInterrupt
            size = self._terminal.current_size()
            shown = "*" * len(typed) if secret else typed
            page = body(view.text, size.columns, notice=self._notice, entry=(prompt, shown))
            keys = ["Enter: done", "Esc: back to the choices", "Ctrl-U: clear"]
            layout = compose(view.heading, page, len(page.rows), keys, size)
            self._draw(layout, _cursor(layout, page, size))
            key = self._read_key()
            if key == RESIZED:
                continue
            assert isinstance(key, KeyPress)
            action = _key_action(key)
            if action == "interrupt":
                raise KeyboardInterrupt
            if action == "enter":
                return typed
            if action == "back":
                return None
            if key.key in (Keys.ControlH, Keys.Backspace):
                typed = typed[:-1]
            elif key.key == Keys.ControlU:
                typed = ""
            elif isinstance(key.key, str) and len(key.key) == 1 and key.key.isprintable():
                typed += key.key

    def install(self, installer: Installer) -> InstallReport:
        view = installer.view
        self.show(view)

        def progress(step: str, fraction: float) -> None:
            done = max(0.0, min(fraction, 1.0))
            size = self._terminal.current_size()
            bar_width = max(10, min(40, size.columns - 8))
            filled = round(done * bar_width)
            lines = f"{step}\n[{'#' * filled}{'.' * (bar_width - filled)}] {done * 100:3.0f}%"
            page = body(f"{view.text}\n\n{lines}", size.columns)
            keys = ["Please wait", "Ctrl-C: stop"]
            self._draw(compose(view.heading, page, len(page.rows), keys, size))

        with self._normal_mode():
            progress("starting", 0.0)
            return installer.install(progress)


def _cursor(layout: Layout, page: Body, size: TerminalSize) -> tuple[int, int] | None:
    if page.entry_row is None:
        return None
    titled = next(i for i, row in enumerate(layout.rows) if row.style is not RowStyle.BAR)
    row = titled + page.entry_row - layout.top
    column = min(len(page.rows[page.entry_row].text), size.columns - 1)
    return (row, column)


def _key_action(key: KeyPress) -> str:
    name = key.key
    if name == Keys.ControlC:
        return "interrupt"
    if name in (Keys.ControlM, Keys.ControlJ):
        return "enter"
    if name == Keys.Escape:
        return "back"
    if name == Keys.Up:
        return "up"
    if name == Keys.Down:
        return "down"
    if name in (Keys.PageDown, " "):
        return "next-page"
    if name in (Keys.PageUp, "b"):
        return "previous-page"
    return "other"
