"""The live installer's events: one JSON object per line, each with `event` and `t`."""

from __future__ import annotations

import json
from pathlib import Path

from commands.live_events import EventPort


def test_each_event_is_one_json_line_with_the_time_since_power_on(tmp_path: Path) -> None:
    uptime = tmp_path / "uptime"
    uptime.write_text("12.345 20.00\n")
    port = tmp_path / "ttyS1"
    port.touch()  # the port exists; the events never create a file
    with EventPort(port, uptime) as events:
        events.emit("booted")
        events.emit("screen", screen="welcome")
    lines = port.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"event": "booted", "t": 12.35},
        {"event": "screen", "t": 12.35, "screen": "welcome"},
    ]


def test_a_computer_without_the_port_drops_the_events(tmp_path: Path) -> None:
    with EventPort(tmp_path / "no-such-port", tmp_path / "no-uptime") as events:
        events.emit("booted")  # no error: the install goes on without events
    assert not (tmp_path / "no-such-port").exists()
