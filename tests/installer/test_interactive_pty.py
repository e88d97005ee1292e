"""The real `engine-install` in a pseudo-terminal: keystrokes in, screen text out.

pexpect drives the interactive front end exactly as a person would (arrow keys, Enter,
Ctrl-C). The dry-run and abort tests need only the reference ISO and a blank image; the full
upgrade needs the install engine and a real 4.5.0 reference disk.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pexpect
import pytest

from disk_images.layout import Slot
from disk_images.probe import Installation, probe
from reference_builds.disk import create_reference_disk
from reference_builds.pytest_plugin import EngineDiskFactory, sparse_digest

DOWN = "\x1b[B"
ENTER = "\r"
CTRL_C = "\x03"


class Terminal:
    """engine-install in a pty, with a transcript kept for failure messages."""

    def __init__(self, tmp_path: Path, *args: object, timeout: float = 30) -> None:
        self.log = (tmp_path / "transcript.txt").open("w", encoding="utf-8")
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "commands.engine_install", *map(str, args)],
            dimensions=(50, 140),
            encoding="utf-8",
            timeout=timeout,
            env={
                "TERM": "xterm",
                "LC_ALL": "C.UTF-8",
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                # No cursor-position queries: nobody answers them in a pty.
                "PROMPT_TOOLKIT_NO_CPR": "1",
            },
        )
        self.child.logfile_read = self.log

    def expect(self, text: str, timeout: float | None = None) -> None:
        self.child.expect_exact(text, timeout=timeout or self.child.timeout)

    def answer(self, prompt: str, keys: str) -> None:
        """Wait for `prompt` (a screen's question), then type `keys`."""
        self.expect(prompt)
        self.child.send(keys)

    def finish(self) -> int:
        self.child.expect(pexpect.EOF)
        self.child.close()
        self.log.close()
        status = self.child.exitstatus
        return int(status) if status is not None else -1


def test_fresh_dry_run_with_back_and_a_progress_bar(tmp_path: Path, iso: Path, blank: Path) -> None:
    before = sparse_digest(blank)
    recorded = tmp_path / "recorded.toml"
    term = Terminal(
        tmp_path, "--media", iso, "--target", blank, "--dry-run", "--record-answers", recorded
    )
    term.answer("Install Engine", ENTER)
    term.answer("Welcome to the Engine 5.0.0 installer", ENTER)
    term.expect("END-USER LICENCE AGREEMENT")
    term.answer("I do not accept", ENTER)  # the pointer starts on "I accept"
    term.expect("Choose the keyboard layout.")
    term.answer("de  German", DOWN * 2 + ENTER)  # us, uk, de
    # Blank disk: no screen 5. Back from registration skips it and lands on the keyboard.
    term.expect("Synchronizer registration")
    term.answer("< Back", DOWN * 2 + ENTER)
    term.expect("Choose the keyboard layout.")
    term.answer("> de  German", ENTER)  # the pointer stays on the chosen "de"
    term.answer("Standalone (not registered)", DOWN + ENTER)
    term.expect("Keyboard: de")
    term.answer("Install now", ENTER)
    term.expect("100%")
    term.expect("Dry run: Engine 5.0.0 would be installed (fresh); nothing was written.")
    term.answer("Do not reboot", DOWN + ENTER)
    term.expect("dry run: this is the plan; nothing was written to the target")
    assert term.finish() == 0
    assert sparse_digest(blank) == before
    text = recorded.read_text()
    assert 'layout = "de"' in text
    assert 'mode = "standalone"' in text


def test_ctrl_c_at_the_finish_prompt_still_records(tmp_path: Path, iso: Path, blank: Path) -> None:
    """The answers are recorded when the progress step ends, not only at a clean exit."""
    recorded = tmp_path / "recorded.toml"
    term = Terminal(
        tmp_path, "--media", iso, "--target", blank, "--dry-run", "--record-answers", recorded
    )
    term.answer("Install Engine", ENTER)
    term.answer("Welcome to the Engine", ENTER)
    term.answer("I do not accept", ENTER)
    term.answer("Choose the keyboard layout.", ENTER)
    term.answer("Standalone (not registered)", DOWN + ENTER)
    term.answer("Install now", ENTER)
    term.answer("Do not reboot", CTRL_C)
    assert term.finish() == 130
    text = recorded.read_text()
    assert 'layout = "us"' in text
    assert 'mode = "standalone"' in text


def test_ctrl_c_before_confirmation_writes_nothing(tmp_path: Path, iso: Path, blank: Path) -> None:
    before = sparse_digest(blank)
    term = Terminal(tmp_path, "--media", iso, "--target", blank)
    term.answer("Install Engine", ENTER)
    term.answer("Welcome to the Engine", ENTER)
    term.answer("I do not accept", ENTER)
    term.answer("Choose the keyboard layout.", CTRL_C)
    term.expect("error: installation cancelled; nothing was written to the target")
    assert term.finish() == 130
    assert sparse_digest(blank) == before


def test_declining_the_eula_ends_the_run(tmp_path: Path, iso: Path, blank: Path) -> None:
    before = sparse_digest(blank)
    term = Terminal(tmp_path, "--media", iso, "--target", blank)
    term.answer("Install Engine", ENTER)
    term.answer("Welcome to the Engine", ENTER)
    term.answer("I do not accept", DOWN + ENTER)
    term.expect("The licence was not accepted; nothing was written.")
    assert term.finish() == 2  # the same as declining in an answer file
    assert sparse_digest(blank) == before


@pytest.mark.root
@pytest.mark.slow
def test_full_interactive_upgrade_of_a_real_45_disk(tmp_path: Path, iso: Path) -> None:
    disk = tmp_path / "engine-4.5.0.img"
    create_reference_disk(disk, "4.5.0", 1 << 30)
    found = probe(disk)
    assert isinstance(found, Installation)
    assert found.version == "4.5.0"
    recorded = tmp_path / "recorded.toml"

    term = Terminal(
        tmp_path, "--media", iso, "--target", disk, "--record-answers", recorded, timeout=120
    )
    term.answer("Install Engine", ENTER)
    term.answer("Welcome to the Engine 5.0.0 installer", ENTER)
    term.answer("I do not accept", ENTER)
    term.answer("Keyboard layout", ENTER)  # the installed layout is preselected
    term.expect("this may take a few seconds")
    term.expect("Found Engine 4.5.0 on disk")
    term.expect(f"VMs: {len(found.vms)}")
    # Back from screen 5 lands on screen 4; forward again finds the installation again.
    term.answer("Quit (nothing is written)", DOWN * 2 + ENTER)  # upgrade, erase, < Back
    term.expect("Choose the keyboard layout.")
    term.answer("Quit (nothing is written)", ENTER)
    term.expect("Found Engine 4.5.0 on disk")
    term.answer("Upgrade Engine 4.5.0 to 5.0.0 (keeps VMs)", ENTER)
    term.answer("Keep the current registration", ENTER)
    term.expect("the new system goes into slot B; VM disks are not touched")
    term.expect("by hand (upgrade guide, step 5)")
    term.answer("Upgrade now", ENTER)
    term.expect("100%", timeout=300)
    term.expect("Engine 5.0.0 installed in slot B.")
    term.expect("Upgrade status: Installed (Reboot Required)")
    term.answer("Do not reboot", DOWN + ENTER)
    assert term.finish() == 0

    after = probe(disk)
    assert isinstance(after, Installation)
    assert str(after.upgrade_status) == "Installed (Reboot Required)"
    assert after.slots.get(Slot.B) == "5.0.0" or after.version == "5.0.0"
    assert [vm.name for vm in after.vms] == [vm.name for vm in found.vms]
    assert after.keyboard == found.keyboard
    assert after.registered == found.registered
    assert 'action = "upgrade"' in recorded.read_text()


def test_token_typed_in_the_terminal_is_never_shown(tmp_path: Path, iso: Path, blank: Path) -> None:
    token = "TYPED-canary-93ab"
    recorded = tmp_path / "recorded.toml"
    term = Terminal(
        tmp_path, "--media", iso, "--target", blank, "--dry-run", "--record-answers", recorded
    )
    term.answer("Install Engine", ENTER)
    term.answer("Welcome to the Engine", ENTER)
    term.answer("I do not accept", ENTER)
    term.answer("Quit (nothing is written)", ENTER)  # keyboard: us
    term.answer("Standalone (not registered)", ENTER)  # synchronizer is first
    term.answer("Synchronizer server", "sync.example.com" + ENTER)
    term.answer("Use it anyway", DOWN + ENTER)  # no such host here: the check says so
    term.answer("Registration token", token + ENTER)
    term.expect("Registration: Synchronizer sync.example.com")
    term.answer("Install now", ENTER)
    term.answer("Do not reboot", DOWN + ENTER)
    term.expect("token ***")
    assert term.finish() == 0
    transcript = (tmp_path / "transcript.txt").read_text()
    assert "sync.example.com" in transcript
    assert token not in transcript
    assert token not in recorded.read_text()


@pytest.mark.root
def test_back_from_the_summary_keeps_the_registration(
    tmp_path: Path, iso: Path, engine_disk: EngineDiskFactory
) -> None:
    """After Summary -> Back, Enter on the registration screen and its prompts gives back
    what was chosen and typed (synchronizer, the server, the token), not "keep"."""
    disk = engine_disk("4.5.0", size="1G", with_vms=False)
    term = Terminal(tmp_path, "--media", iso, "--target", disk, "--dry-run", timeout=120)
    term.answer("Install Engine", ENTER)
    term.answer("Welcome to the Engine", ENTER)
    term.answer("I do not accept", ENTER)
    term.answer("Keyboard layout", ENTER)
    term.answer("Upgrade Engine 4.5.0 to 5.0.0 (keeps VMs)", ENTER)
    term.answer("Standalone (not registered)", DOWN + ENTER)  # keep, synchronizer, standalone
    term.answer("Synchronizer server", "sync.example.com" + ENTER)
    term.answer("Use it anyway", DOWN + ENTER)  # no such host here: the check says so
    term.answer("Registration token", "tok-1" + ENTER)
    term.expect("Registration: Synchronizer sync.example.com")
    term.answer("Upgrade now", DOWN + ENTER)  # < Back
    term.answer("Standalone (not registered)", ENTER)  # the pointer is on synchronizer
    term.answer("Synchronizer server", ENTER)  # sync.example.com is filled in
    term.answer("Use it anyway", DOWN + ENTER)
    term.answer("Enter keeps the one typed before", ENTER)
    term.expect("Registration: Synchronizer sync.example.com")
    term.answer("Upgrade now", ENTER)
    term.answer("Do not reboot", DOWN + ENTER)
    term.expect("registration: synchronizer (server sync.example.com, token ***)")
    assert term.finish() == 0
