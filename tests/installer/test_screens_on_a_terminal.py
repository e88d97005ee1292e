"""The real `engine-install` on a pseudo-terminal of 80x24 and of 40x10, as a trainer's
projector or a serial console shows it: every screen is drawn whole with its title bar and
footer, and nothing of what the model says is cut off.

pexpect types the keys; pyte (a terminal emulator) renders what the program wrote into a
screen buffer, so the tests read rows and reverse-video bars, not escape codes. The text each
screen must show comes from the model itself: an `Installer` on the same medium and disk is
driven through the same answers beside the terminal.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pexpect
import pyte
import pytest

from installer.frontends.api import Installer, load_medium, load_target
from installer.model import Screen
from installer.screens import View
from reference_builds.pytest_plugin import EngineDiskFactory, sparse_digest

DOWN = "\x1b[B"
ENTER = "\r"
ESC = "\x1b"
SPACE = " "
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((40, 10), id="40x10")]


class _FrameScreen(pyte.Screen):  # type: ignore[misc,unused-ignore]
    """A pyte screen that counts whole frames: the installer starts each with a clear and
    ends it by setting the cursor's visibility."""

    def __init__(self, columns: int, lines: int) -> None:
        super().__init__(columns, lines)
        self.frames = 0
        self.drawing = False

    def erase_in_display(self, how: int = 0, *args: Any, **kwargs: Any) -> None:
        if how == 2:
            self.drawing = True
        super().erase_in_display(how, *args, **kwargs)

    def _cursor_mode(self, modes: tuple[int, ...], kwargs: dict[str, Any]) -> None:
        if kwargs.get("private") and 25 in modes and self.drawing:
            self.drawing = False
            self.frames += 1

    def set_mode(self, *modes: int, **kwargs: Any) -> None:
        super().set_mode(*modes, **kwargs)
        self._cursor_mode(modes, kwargs)

    def reset_mode(self, *modes: int, **kwargs: Any) -> None:
        super().reset_mode(*modes, **kwargs)
        self._cursor_mode(modes, kwargs)


class Pty:
    """engine-install on a pty of `columns` x `rows`, its output rendered by pyte."""

    def __init__(
        self,
        size: tuple[int, int],
        *args: object,
        timeout: float = 60,
        term: str = "xterm",
        stderr_log: Path | None = None,
    ) -> None:
        self.columns, self.rows = size
        self.screen = _FrameScreen(self.columns, self.rows)
        self.stream = pyte.Stream(self.screen)
        self.sent_at = 0  # frames drawn before the last keys were sent
        argv = [sys.executable, "-m", "commands.engine_install", *map(str, args)]
        if stderr_log is not None:
            # exec: engine-install itself leads the session, its stderr goes to the log.
            argv = ["/bin/sh", "-c", 'exec "$@" 2>"$0"', str(stderr_log), *argv]
        self.child = pexpect.spawn(
            argv[0],
            argv[1:],
            dimensions=(self.rows, self.columns),
            encoding="utf-8",
            timeout=timeout,
            env={
                "TERM": term,
                "LC_ALL": "C.UTF-8",
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                "PROMPT_TOOLKIT_NO_CPR": "1",  # the transcript's prompts: nobody answers CPR
            },
        )

    def rows_text(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def bar_rows(self) -> list[bool]:
        """Per row: drawn in reverse video (the title bar and the footer)."""
        return [
            all(self.screen.buffer[y][x].reverse for x in range(self.columns))
            for y in range(self.rows)
        ]

    def title(self) -> str:
        bars = self.bar_rows()
        rows = self.rows_text()
        return " ".join(rows[y] for y in range(self.rows) if bars[y] and all(bars[: y + 1]))

    def footer(self) -> str:
        bars, rows = self.bar_rows(), self.rows_text()
        end = [y for y in range(self.rows) if all(bars[y:])]
        return " ".join(rows[y] for y in end)

    def body(self) -> list[str]:
        bars, rows = self.bar_rows(), self.rows_text()
        return [rows[y] for y in range(self.rows) if not bars[y]]

    def wait_for(self, what: str, ready: Callable[[], bool]) -> None:
        """Until a whole frame drawn after the last keys satisfies `ready`."""
        while not (self.screen.frames > self.sent_at and not self.screen.drawing and ready()):
            try:
                self.stream.feed(self.child.read_nonblocking(65536, timeout=self.child.timeout))
            except (pexpect.TIMEOUT, pexpect.EOF):
                screen = "\n".join(self.rows_text())
                pytest.fail(f"never shown: {what}\n--- the screen:\n{screen}")

    def expect_heading(self, heading: str) -> None:
        self.wait_for(heading, lambda: squeeze(self.title()) == squeeze(heading))

    def send(self, keys: str) -> None:
        self.sent_at = self.screen.frames
        self.child.send(keys)

    def pages(self) -> list[list[str]]:
        """The body of every page of the current screen, paging on with Space to the end."""
        pages = [self.body()]
        while (position := re.search(r"lines +\d+- *(\d+)/(\d+)", self.footer())) and (
            position.group(1) != position.group(2)
        ):
            self.send(SPACE)
            self.wait_for("the next page", lambda: self.body() != pages[-1])
            pages.append(self.body())
        return pages

    def hang_up(self) -> int:
        """Close the terminal as a window closes (its master side goes away); the status
        the program ends with."""
        self.child.ptyproc.fileobj.close()
        deadline = time.monotonic() + self.child.timeout
        while self.child.isalive() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.child.close(force=True)
        return int(self.child.exitstatus if self.child.exitstatus is not None else -1)

    def finish(self) -> tuple[int, str]:
        rest = self.child.read()
        self.child.close()
        return int(self.child.exitstatus if self.child.exitstatus is not None else -1), rest


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def shown_in_full(view: View, pages: list[list[str]], labels: tuple[str, ...]) -> list[str]:
    """The words of the view's text and choices not found on any of its pages (a word split
    across two rows counts as shown: the rows are compared without their spaces)."""
    rendered = squeeze("".join(row for page in pages for row in page))
    words = re.findall(r"\S+", view.text) + [w for label in labels for w in label.split()]
    return [word for word in words if word not in rendered]


def enter(model: Installer) -> None:
    """What Enter does on the screen: the choice the pointer starts on (the default, else the
    first choice)."""
    view = model.view
    model.choose(view.default if view.default is not None else view.choices[0].value)


def check_screen(term: Pty, model: Installer, labels: tuple[str, ...] = ()) -> None:
    """The terminal shows the model's current screen: its title bar, a footer with the keys,
    and every word of its text and of its choices on one of its pages."""
    view = model.view
    term.expect_heading(view.heading)
    assert "Ctrl-C" in term.footer()
    assert all(len(row) <= term.columns for row in term.rows_text())
    choice_labels = tuple(c.label for c in view.choices) + labels
    missing = shown_in_full(view, term.pages(), choice_labels)
    assert not missing, (view.screen, missing)


@pytest.mark.parametrize("size", SIZES)
def test_every_screen_has_a_title_bar_a_footer_and_all_its_text(
    size: tuple[int, int], iso: Path, blank: Path
) -> None:
    model = Installer(load_medium(iso), load_target(blank), dry_run=True)
    term = Pty(size, "--media", iso, "--target", blank, "--dry-run")
    for screen in (Screen.BOOT_MENU, Screen.WELCOME, Screen.EULA, Screen.KEYBOARD):
        assert model.screen is screen
        check_screen(term, model, ("Quit (nothing is written)",))
        term.send(ENTER)  # the licence was paged to its end: Enter accepts
        enter(model)
    assert model.screen is Screen.REGISTRATION
    check_screen(term, model, ("< Back", "Quit (nothing is written)"))
    term.send(DOWN + ENTER)
    model.choose("standalone")
    check_screen(term, model)
    assert "Install now" in " ".join(term.body())
    term.send(ENTER)
    model.next()
    model.install()
    check_screen(term, model)
    term.send(DOWN + ENTER)  # do not reboot
    status, rest = term.finish()
    assert status == 0
    assert "nothing was written to the target" in rest


def test_the_licence_pages_to_its_last_line_before_it_can_be_accepted(
    iso: Path, blank: Path
) -> None:
    model = Installer(load_medium(iso), load_target(blank), dry_run=True)
    boot = model.view.heading
    model.next()
    model.next()
    eula = model.view
    last_line = eula.text.rstrip().splitlines()[-1]
    term = Pty((40, 10), "--media", iso, "--target", blank, "--dry-run")
    term.expect_heading(boot)
    term.send(ENTER + ENTER)
    term.expect_heading(eula.heading)
    assert "I accept" not in " ".join(term.body())
    assert "Enter: next page" in term.footer()
    pages = [term.body()]
    while "Enter: next page" in term.footer():
        term.send(ENTER)  # pages on; it does not accept
        term.wait_for("the next page of the licence", lambda: term.body() != pages[-1])
        assert squeeze(term.title()) == squeeze(eula.heading)
        pages.append(term.body())
    assert len(pages) > 3
    assert squeeze(last_line) in squeeze("".join(row for page in pages for row in page))
    assert "Enter: select" in term.footer()
    assert "> I accept" in term.body()
    term.send(ENTER)
    model.choose("accept")
    term.expect_heading(model.view.heading)  # 4/9 Keyboard layout
    term.send("\x03")
    assert term.finish()[0] == 130


def test_esc_goes_back_a_screen(iso: Path, blank: Path) -> None:
    model = Installer(load_medium(iso), load_target(blank), dry_run=True)
    term = Pty((40, 10), "--media", iso, "--target", blank, "--dry-run")
    for _ in range(3):
        enter(model)
    keyboard = model.view.heading
    enter(model)
    registration = model.view.heading
    term.send(ENTER + ENTER + SPACE * 20 + ENTER + ENTER)  # to the registration screen
    term.expect_heading(registration)
    term.send(ESC)
    term.expect_heading(keyboard)  # a blank disk has no screen 5: Back skips it too
    term.send("\x03")
    assert term.finish()[0] == 130


def test_closing_the_terminal_at_a_screen_ends_as_ctrl_c_does_with_its_lines_in_the_log(
    iso: Path, blank: Path, tmp_path: Path
) -> None:
    """The window is closed while the keyboard screen waits: SIGHUP, then EOF and EIO on the
    dead terminal. The run ends as a Ctrl-C does (status 130, nothing written), and what it
    still says goes to stderr (a log here), without a traceback."""
    before = sparse_digest(blank)
    log = tmp_path / "stderr.log"
    model = Installer(load_medium(iso), load_target(blank))
    for _ in range(3):
        enter(model)
    term = Pty((80, 24), "--media", iso, "--target", blank, stderr_log=log)
    term.send(ENTER + ENTER + SPACE * 20 + ENTER)  # to the keyboard screen
    term.expect_heading(model.view.heading)
    assert term.hang_up() == 130, log.read_text()
    assert log.read_text().splitlines() == [
        "error: installation cancelled; nothing was written to the target",
        "hint: run engine-install again when you are ready",
    ]
    assert sparse_digest(blank) == before


def test_the_screen_is_drawn_again_at_the_new_size_when_the_terminal_is_resized(
    iso: Path, blank: Path
) -> None:
    model = Installer(load_medium(iso), load_target(blank), dry_run=True)
    term = Pty((80, 24), "--media", iso, "--target", blank, "--dry-run")
    term.expect_heading(model.view.heading)
    assert len(term.title()) > 30
    term.sent_at = term.screen.frames
    term.screen.resize(10, 30)
    term.rows, term.columns = 10, 30
    term.child.setwinsize(10, 30)  # the kernel sends the program SIGWINCH
    term.wait_for("the title bar wrapped to 30 columns", lambda: term.bar_rows()[:2] == [True] * 2)
    assert squeeze(term.title()) == squeeze(model.view.heading)
    assert all(len(row) <= 30 for row in term.rows_text())
    term.send("\x03")
    assert term.finish()[0] == 130


@pytest.mark.root
def test_an_upgrade_shows_the_installation_found_and_says_upgrade_now(
    iso: Path, engine_disk: EngineDiskFactory
) -> None:
    disk = engine_disk("4.5.0")
    model = Installer(load_medium(iso), load_target(disk), dry_run=True)
    term = Pty((40, 10), "--media", iso, "--target", disk, "--dry-run", timeout=120)
    for _ in range(4):
        check_screen(term, model, ("Quit (nothing is written)",))
        term.send(ENTER)
        enter(model)
    assert model.screen is Screen.EXISTING
    check_screen(term, model, ("< Back", "Quit (nothing is written)"))
    term.send(ENTER)  # upgrade
    model.next()
    term.expect_heading(model.view.heading)
    term.send(ENTER)  # keep the registration
    model.next()
    check_screen(term, model)  # the summary
    shown = " ".join(term.body())
    assert "Upgrade now" in shown
    assert "Install now" not in shown
    term.send("\x03")
    assert term.finish()[0] == 130


def test_reboot_now_is_returned_to_the_caller_on_a_terminal_of_a_given_size(
    iso: Path, blank: Path
) -> None:
    """The live system's way in: `run_interactive` on a terminal it names, with the size it
    says (a serial console cannot report one); "Reboot now" comes back as a request."""
    import os
    import pty
    import threading

    from enginekit.terminal import TerminalSize
    from installer.frontends.fullscreen import ScreenTerminal
    from installer.frontends.interactive import InteractiveResult, run_interactive

    master, slave = pty.openpty()
    screen = _FrameScreen(60, 12)
    stream = pyte.Stream(screen)
    installer = Installer(load_medium(iso), load_target(blank), dry_run=True)
    terminal = ScreenTerminal(slave, slave, size=lambda: TerminalSize(60, 12))

    def user() -> None:
        """Types the answers, and Enter on the finish screen once it is drawn."""
        keys = ENTER + ENTER + SPACE * 20 + ENTER + ENTER + DOWN + ENTER + ENTER
        os.write(master, keys.encode())
        while not ("9/9 Finished" in "".join(screen.display) and not screen.drawing):
            stream.feed(os.read(master, 65536).decode("utf-8", "replace"))
        os.write(master, ENTER.encode())  # Reboot now (the pointer starts on it)

    typing = threading.Thread(target=user, daemon=True)
    typing.start()
    try:
        result: InteractiveResult = run_interactive(installer, terminal=terminal)
    finally:
        os.close(slave)
        typing.join(timeout=60)
        os.close(master)
    assert result.reboot
    assert result.report is not None
