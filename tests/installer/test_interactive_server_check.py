"""The interactive installer checks the Synchronizer server before it asks for the token: a
server that does not answer is named, and the user changes it (or goes on). Real listener on
127.0.0.1, a real closed port, the real engine-install in a pty."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

DOWN = "\x1b[B"
ENTER = "\r"
CLEAR_LINE = "\x15"  # Ctrl-U: drop the text filled in from the last try


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(10)
    with server:
        yield server


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def spawn(tmp_path: Path, *args: object) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "commands.engine_install", *map(str, args)],
        dimensions=(50, 140),
        encoding="utf-8",
        timeout=60,
        env={
            "TERM": "xterm",
            "LC_ALL": "C.UTF-8",
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "PROMPT_TOOLKIT_NO_CPR": "1",
        },
    )
    child.logfile_read = (tmp_path / "transcript.txt").open("w", encoding="utf-8")
    return child


def test_an_unreachable_server_is_named_before_the_token_is_asked(
    tmp_path: Path, iso: Path, blank: Path, listener: socket.socket
) -> None:
    open_port = int(listener.getsockname()[1])
    dead = closed_port()
    child = spawn(tmp_path, "--media", iso, "--target", blank, "--dry-run")
    for prompt in ("Install Engine", "Welcome to the Engine", "I do not accept", "Quit"):
        child.expect_exact(prompt)
        child.send(ENTER)
    child.expect_exact("Standalone (not registered)")
    child.send(ENTER)  # synchronizer is first
    child.expect_exact("Synchronizer server")
    child.send(f"127.0.0.1:{dead}" + ENTER)
    child.expect_exact(f"The Synchronizer server 127.0.0.1:{dead} could not be reached")
    index = child.expect_exact(["Registration token", "Change the server"])
    assert index == 1, "the token was asked for before the server was settled"
    child.send(ENTER)  # change it
    child.expect_exact("Synchronizer server")
    child.send(CLEAR_LINE + f"127.0.0.1:{open_port}" + ENTER)
    child.expect_exact("Registration token")
    conn, _ = listener.accept()  # the check really connected
    conn.close()
    child.send("tok-1" + ENTER)
    child.expect_exact(f"Registration: Synchronizer 127.0.0.1:{open_port}")
    child.send(ENTER)  # install now (dry run)
    child.expect_exact("Do not reboot")
    child.send(DOWN + ENTER)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
