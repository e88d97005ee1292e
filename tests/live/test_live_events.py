"""The live installer's events: one JSON object per line, each with `event` and `t`."""

from __future__ import annotations

import json
from pathlib import Path

from commands.live_events import EventPort, describe_event, read_events


def test_each_event_is_one_json_line_with_the_time_since_power_on(tmp_path: Path) -> None:
    uptime = tmp_path / "uptime"
    uptime.write_text("12.345 20.00\n")
    port = tmp_path / "ttyS1"
    port.touch()  # the port exists; the events never create a file
    with EventPort(port, uptime) as events:
        events.emit("booted")
        events.emit("screen", screen="welcome")
    lines = port.read_text().splitlines()
    assert lines[0] == ""  # a fresh line first: the firmware's last one may be unfinished
    assert [json.loads(line) for line in lines[1:]] == [
        {"event": "booted", "t": 12.35},
        {"event": "screen", "t": 12.35, "screen": "welcome"},
    ]


def test_the_events_are_read_out_of_the_firmwares_output_on_the_same_port(
    tmp_path: Path,
) -> None:
    # What OVMF and systemd-boot leave on the second serial port before the installer
    # starts (escape sequences, a box-drawing byte that is not UTF-8, no final newline).
    firmware = (
        b'\x1b[2J\x1b[01;01HBdsDxe: loading Boot0001 "UEFI QEMU USB HARDDRIVE"\r\n\xc4\xc4 Engine'
    )
    port = tmp_path / "ttyS1"
    port.write_bytes(firmware)
    with EventPort(port, tmp_path / "no-uptime") as events:
        events.emit("booted")
        events.emit("finished", version="5.0.0")
    assert read_events(port.read_bytes()) == [
        {"event": "booted", "t": 0.0},
        {"event": "finished", "t": 0.0, "version": "5.0.0"},
    ]


def test_a_computer_without_the_port_drops_the_events(tmp_path: Path) -> None:
    with EventPort(tmp_path / "no-such-port", tmp_path / "no-uptime") as events:
        events.emit("booted")  # no error: the install goes on without events
    assert not (tmp_path / "no-such-port").exists()


def test_an_event_for_people_is_one_line_without_the_screen_text_or_lists() -> None:
    screen = {"event": "screen", "t": 12.345, "screen": "eula", "title": "Licence", "text": "a\nb"}
    disks = {"event": "disks", "t": 3.0, "medium": "/dev/sr0", "disks": [{"device": "/dev/sda"}]}
    assert describe_event(screen) == "   12.3 s  screen screen=eula title=Licence"
    assert describe_event(disks) == "    3.0 s  disks medium=/dev/sr0"
