"""On a computer with a screen, the live installer's screens appear there as well as on the
serial console, and the computer's own keyboard answers them.

QEMU gives the computer a standard VGA card and its PS/2 keyboard; the test reads the screen
through QMP (the text memory of a BIOS computer's VGA console) and types on the keyboard, as a
person in front of it would. On UEFI the console is a frame buffer, pixels the test cannot read
as text; there the keyboard alone proves the installer runs on the screen's terminal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from commands.live_events import read_events
from enginekit.qemu import BootSpec, Drive, DriveKind, Firmware, QemuMachine
from reference_builds.live_initramfs import LiveImage
from reference_builds.pytest_plugin import EngineDiskFactory, EngineMediumFactory

pytestmark = [pytest.mark.root, pytest.mark.qemu, pytest.mark.slow]


def _until(what: str, check: Callable[[], bool], machine: QemuMachine, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert machine.running(), f"the computer stopped before {what}: {machine.console()[-800:]}"
        assert time.monotonic() < deadline, (
            f"no {what} in {timeout:g} s: {machine.console()[-800:]}"
        )
        time.sleep(0.2)


def _screens(events_log: Path) -> list[dict[str, Any]]:
    if not events_log.exists():
        return []
    return [e for e in read_events(events_log.read_bytes()) if e["event"] == "screen"]


def _shown(events_log: Path, screen: str) -> Callable[[], bool]:
    return lambda: any(e["screen"] == screen for e in _screens(events_log))


@pytest.mark.parametrize("firmware", [Firmware.BIOS, Firmware.UEFI])
def test_the_screens_show_on_the_computer_s_screen_and_its_keyboard_answers_them(
    tmp_path: Path,
    firmware: Firmware,
    live_installer: LiveImage,
    engine_disk: EngineDiskFactory,
    engine_medium: EngineMediumFactory,
) -> None:
    disk = engine_disk("4.5.0", size="1G", with_vms=False)
    medium = engine_medium("5.0.0")
    events_log = tmp_path / "events.jsonl"
    spec = BootSpec(
        firmware,
        (Drive(disk, DriveKind.SATA, snapshot=True), Drive(medium, DriveKind.CDROM)),
        memory_mb=1024,
        kernel=live_installer.kernel.vmlinuz,
        initrd=live_installer.initrd,
        append=live_installer.append,
        events_log=events_log,
        screen=True,
    )
    with QemuMachine(spec) as machine:
        _until("welcome screen", _shown(events_log, "welcome"), machine, timeout=300)
        welcome = _screens(events_log)[-1]
        if firmware is Firmware.BIOS:
            # The same screen, title bar and all, on the screen and on the serial console.
            _until("welcome on the screen", lambda: "Welcome" in machine.screen_text(), machine, 30)
            text = machine.screen_text()
            # The title bar, "Engine 5.0.0 installer \u2014 2/9 Welcome" (the VGA font has no
            # em dash), and the screen's first words.
            product, step = welcome["title"].split(" \u2014 ")
            assert product in text, text
            assert step in text, text
            assert "Welcome to the Engine 5.0.0 installer." in text, text
            assert "Welcome to the Engine 5.0.0 installer" in machine.console()
        machine.press_keys("ret")  # Next, on the computer's own keyboard
        _until("licence screen", _shown(events_log, "eula"), machine, timeout=60)
        if firmware is Firmware.BIOS:
            _until(
                "the licence on the screen",
                lambda: "END-USER LICENCE AGREEMENT" in machine.screen_text(),
                machine,
                30,
            )
        answers = [
            (e["screen"], e["answer"])
            for e in read_events(events_log.read_bytes())
            if e["event"] == "answer"
        ]
        assert answers == [("boot", "install"), ("welcome", "next")]
