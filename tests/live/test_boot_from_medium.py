"""`engine-disk boot DISK --from MEDIUM`: the computer started from the installer medium, as a
technician starts a laptop from a DVD or a stick.

Without a terminal, an unattended medium runs by itself: the installer's events come out as
JSON lines, the computer restarts, its disk boots alone on the same bus (NVMe here) and the
result says the new Engine runs. On a terminal (a real pseudo-terminal, through pexpect) the
console is the user's: the screens are driven with the keys a trainer uses (Back once), "Reboot
now" restarts the computer and its disk boots into 5.0.0, and the session recorded with --record
plays back in the real `asciinema`; or Ctrl-] stops the computer, and the last line says what
the disk holds (untouched), as it does when the terminal is closed. An interactive medium
without a terminal is refused before QEMU starts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from disk_images.image import create_image
from disk_images.lock import disk_lock
from disk_images.probe import Installation, probe
from disk_images.state import UpgradeStatus
from reference_builds.pytest_plugin import EngineDiskFactory, EngineMediumFactory, sparse_digest

from .conftest import UPGRADE_ANSWERS, unattended_medium

pytestmark = [pytest.mark.root, pytest.mark.qemu, pytest.mark.slow]

ENGINE_DISK = [sys.executable, "-m", "commands.engine_disk"]


def test_an_unattended_medium_without_a_terminal_upgrades_and_the_disk_boots_on_sata(
    tmp_path: Path, engine_disk: EngineDiskFactory, engine_medium: EngineMediumFactory
) -> None:
    medium = unattended_medium(tmp_path, engine_medium("5.0.0"), UPGRADE_ANSWERS)
    disk = engine_disk("4.5.0")
    done = subprocess.run(
        [*ENGINE_DISK, "boot", str(disk), "--from", str(medium), "--disk-bus", "sata", "--json"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    events, result = lines[:-1], lines[-1]
    names = [e["event"] for e in events]
    assert names[0] == "booted", names
    assert names[-2:] == ["finished", "rebooting"], names
    assert result["result"] == "booted"
    (running,) = [a for a in result["boot"]["attempts"] if a["version"]]
    assert (running["version"], running["slot"]) == ("5.0.0", "B")
    after = probe(disk)
    assert isinstance(after, Installation)
    assert (after.version, after.upgrade_status) == ("5.0.0", UpgradeStatus.BLANK)


FRESH_ANSWERS = """\
[eula]
accept = true

[keyboard]
layout = "us"

[registration]
mode = "standalone"

[finish]
reboot = true
"""


def test_a_blank_disk_gets_a_fresh_install_and_boots_5_0(
    tmp_path: Path, engine_medium: EngineMediumFactory
) -> None:
    """A new computer (a blank disk: UEFI, NVMe) started from an unattended medium: the
    installer finds no Engine, installs 5.0.0 and restarts, and the disk boots it."""
    disk = create_image(tmp_path / "new-computer.img", 2 << 30)
    medium = unattended_medium(tmp_path, engine_medium("5.0.0"), FRESH_ANSWERS)
    done = subprocess.run(
        [*ENGINE_DISK, "boot", str(disk), "--from", str(medium), "--json"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    events, result = lines[:-1], lines[-1]
    screens = [e["screen"] for e in events if e["event"] == "screen"]
    assert "existing" not in screens  # nothing on the disk to upgrade or erase
    offered = next(e for e in events if e["event"] == "disks")["disks"]
    assert [(d["device"], d["engine"]) for d in offered] == [("/dev/nvme0n1", None)]
    assert [e["event"] for e in events][-2:] == ["finished", "rebooting"]
    (running,) = [a for a in result["boot"]["attempts"] if a["version"]]
    assert running["version"] == "5.0.0"
    after = probe(disk)
    assert isinstance(after, Installation)
    assert (after.version, after.upgrade_status) == ("5.0.0", UpgradeStatus.BLANK)


def test_an_interactive_medium_without_a_terminal_is_refused_before_starting(
    engine_disk: EngineDiskFactory, engine_medium: EngineMediumFactory
) -> None:
    disk = engine_disk("4.5.0", with_vms=False)
    before = sparse_digest(disk)
    done = subprocess.run(
        [*ENGINE_DISK, "boot", str(disk), "--from", str(engine_medium("5.0.0"))],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    (error,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "has no answer file" in error
    assert "Traceback" not in done.stderr
    assert sparse_digest(disk) == before


# The title bar of a screen ("Engine 5.0.0 installer — 4/9 Keyboard layout"), and what a
# screen's footer ends with once it is drawn and reads keys.
TITLE = re.compile(rb"installer \xe2\x80\x94 (\d)/9 ")
FOOTER = re.compile(rb"Ctrl-C: quit|Ctrl-C: stop|lines \d+-\d+/\d+")
ESC, ENTER = "\x1b", "\r"
# Screen 1 as isolinux draws it on the serial console, counting down to its default entry.
BOOT_MENU = "Automatic boot in"
# The stop tests start a BIOS computer: SeaBIOS shows the menu within a second, where OVMF
# takes ~4 s (the trainer test above boots UEFI).
ON_BIOS = ("--firmware", "bios")


def test_on_a_terminal_a_trainer_drives_the_screens_back_once_and_the_disk_boots_5_0(
    tmp_path: Path, engine_disk: EngineDiskFactory, engine_medium: EngineMediumFactory
) -> None:
    """The interactive medium on a real pseudo-terminal: Enter through the screens, Esc
    (Back) once on the keyboard screen, "Reboot now" at the end; then the disk boots."""
    disk = engine_disk("4.5.0", with_vms=False)
    cast = tmp_path / "session.cast"
    argv = ["boot", str(disk), "--from", str(engine_medium("5.0.0")), "--disk-bus", "nvme"]
    child = pexpect.spawn(
        sys.executable,
        ["-m", "commands.engine_disk", *argv, "--record", str(cast)],
        timeout=600,
        dimensions=(24, 80),
    )
    seen: list[int] = []
    try:
        while True:
            if child.expect([TITLE, "the installer restarted the computer"]) == 1:
                break
            screen = int(child.match.group(1))
            seen.append(screen)
            child.expect(FOOTER)
            if screen == 8:
                continue  # Installing: nothing to answer
            child.send(ESC if screen == 4 and seen.count(4) == 1 else ENTER)
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    transcript = (child.before or b"").decode("utf-8", "replace")
    assert child.exitstatus == 0, transcript[-3000:]
    # Screen 1 was the medium's boot menu (systemd-boot's default entry): the installer's
    # own screens begin at 2, and none of them is a second boot menu.
    assert seen[0] == 2
    assert 1 not in seen
    # Back from the keyboard layout led to the licence again, then on to the end.
    assert seen.index(4) < seen.index(3, seen.index(4))
    assert seen[-1] == 9
    assert "ENGINE RUNNING version=5.0.0 slot=B" in transcript
    after = probe(disk)
    assert isinstance(after, Installation)
    assert (after.version, after.upgrade_status) == ("5.0.0", UpgradeStatus.BLANK)
    _check_cast(cast, ("Install Engine", "2/9 Welcome", "4/9 Keyboard layout", "9/9 Finished"))
    steps = json.loads((tmp_path / "session.walkthrough.json").read_text())
    shown = [(step["screen"], step["answer"]) for step in steps]
    assert shown[:3] == [("boot", "install"), ("welcome", "next"), ("eula", "accept")]
    assert steps[0]["text"].splitlines() == [
        "Install Engine",
        "Check this medium, then install Engine",
    ]
    assert ("keyboard", "back") in shown  # Esc on the layout screen
    assert ("existing", "upgrade") in shown
    assert shown[-1] == ("finish", "reboot")
    assert all(step["title"] and isinstance(step["t"], float) for step in steps)
    welcome = next(step for step in steps if step["screen"] == "welcome")
    assert "Welcome to the Engine 5.0.0 installer" in welcome["text"]
    markdown = (tmp_path / "session.walkthrough.md").read_text()
    assert "Answer: **upgrade**" in markdown


def test_on_a_terminal_ctrl_bracket_stops_the_computer_and_the_disk_is_untouched(
    engine_disk: EngineDiskFactory, engine_medium: EngineMediumFactory
) -> None:
    disk = engine_disk("4.5.0", with_vms=False)
    before = sparse_digest(disk)
    child = pexpect.spawn(
        sys.executable,
        [*ENGINE_DISK[1:], "boot", str(disk), "--from", str(engine_medium("5.0.0")), *ON_BIOS],
        timeout=600,
        dimensions=(24, 80),
    )
    try:
        child.expect(TITLE)  # the installer's first screen, waiting for a key
        child.expect(FOOTER)
        child.sendcontrol("]")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    transcript = (child.before or b"").decode("utf-8", "replace")
    assert child.exitstatus == 130, transcript[-2000:]
    assert "[detached: the computer was stopped]" in transcript
    assert f"stopped by the user; {disk}: Engine 4.5.0" in transcript
    assert sparse_digest(disk) == before  # stopped at the first screen: nothing written


def test_closing_the_terminal_stops_the_computer_and_the_log_says_what_the_disk_holds(
    tmp_path: Path, engine_disk: EngineDiskFactory, engine_medium: EngineMediumFactory
) -> None:
    """The trainer's terminal window is closed during screen 1 (the boot menu, counting down
    to its default entry; Ctrl-] above is pressed on the installer's first screen): the
    command gets SIGHUP, and EIO from the dead terminal. It stops the computer (QEMU is gone:
    the disk's lock is free), ends as a Ctrl-C does, and its last lines go to stderr, a log
    here."""
    disk = engine_disk("4.5.0", with_vms=False)
    before = sparse_digest(disk)
    log = tmp_path / "stderr.log"
    argv = [*ENGINE_DISK, "boot", str(disk), "--from", str(engine_medium("5.0.0")), *ON_BIOS]
    # exec: the command itself leads the session whose terminal closes.
    child = pexpect.spawn(
        "/bin/sh", ["-c", 'exec "$@" 2>"$0"', str(log), *argv], timeout=600, dimensions=(24, 80)
    )
    try:
        child.expect(BOOT_MENU)
        child.ptyproc.fileobj.close()  # the window closes: the terminal's master side is gone
        deadline = time.monotonic() + 120
        while child.isalive() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        child.close(force=True)
    said = log.read_text()
    assert child.exitstatus == 130, said
    assert "Traceback" not in said
    assert "[hangup: the terminal closed, the computer was stopped]" in said
    assert f"the terminal closed: the computer was stopped; {disk}: Engine 4.5.0" in said
    with disk_lock(disk, exclusive=True):  # refused while a QEMU has the disk open
        pass
    assert sparse_digest(disk) == before


def _check_cast(cast: Path, shown: tuple[str, ...]) -> None:
    """The recording is asciicast v2 and the real asciinema plays it back (`asciinema cat`
    needs a terminal of its own: pexpect gives it one)."""
    header = json.loads(cast.read_text().splitlines()[0])
    assert (header["version"], header["width"], header["height"]) == (2, 80, 24)
    asciinema = shutil.which("asciinema")
    assert asciinema is not None, "tools/setup installs asciinema"
    played, status = pexpect.run(f"{asciinema} cat {cast}", withexitstatus=True, timeout=60)
    assert status == 0, played[-500:]
    text = played.decode("utf-8", "replace")
    assert "ENGINE INSTALLER BOOTED version=5.0.0" in text
    for title in shown:
        assert title in text
