"""`engine-disk boot DISK --from MEDIUM`: start the computer (the disk image) from an Engine
installer medium in its DVD drive or, with `--usb`, as a USB stick, as a technician does.

On a terminal the computer's console is the user's terminal (`enginekit.console_relay`): a
trainer drives the installer's screens live; Ctrl-] or Ctrl-C stops the computer, and so does
closing the terminal (the last lines then go to stderr when that is a log). Without one
(or with `--json`) the installer's events are printed as they come. When the installer has
finished and restarts the computer, the disk boots alone (`disk_images.boot`) and the new
Engine's ENGINE RUNNING line is shown. Whatever ends the run, the last line says what the
disk holds. The medium is never written (a stick is attached through a throw-away overlay).
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from commands.live_events import describe_event, read_events
from disk_images.boot import boot_installed_disk
from disk_images.lock import disk_lock
from disk_images.probe import Installation, probe
from enginekit.console_relay import CastRecorder, RelayEnd, relay
from enginekit.errors import EngineKitError, UserInputError
from enginekit.hangup import leave_closed_terminal
from enginekit.outputs import check_new_output
from enginekit.qemu import BootSpec, Drive, DriveKind, Firmware, QemuMachine
from enginekit.scratch import scratch_tree
from enginekit.terminal import TerminalSize, reported_size
from enginekit.versions import DiskLayout
from media.manifest import ANSWERS_PATH
from media.reader import MediumReader

BUSES = {"sata": DriveKind.SATA, "nvme": DriveKind.NVME, "virtio": DriveKind.DISK}
RELAY_ENDS = {
    RelayEnd.EXITED: "exited",
    RelayEnd.DETACHED: "stopped",
    RelayEnd.INTERRUPTED: "stopped",
    RelayEnd.HANGUP: "hangup",
}


@dataclass(frozen=True)
class MediumBoot:
    disk: Path
    medium: Path
    usb: bool = False
    firmware: Firmware = Firmware.BIOS
    bus: str = "nvme"
    timeout: float = 1800.0  # without a terminal: the whole installer run
    json: bool = False
    record: Path | None = None
    interactive: bool = False  # the console on the user's terminal


@dataclass
class Outcome:
    events: list[dict[str, Any]]
    ended: str  # finished | failed | stopped | hangup | timed-out | powered-off


def firmware_for(disk: Path) -> Firmware:
    """The firmware of the computer the disk is in: SeaBIOS for an MBR Engine, UEFI for the
    rest (the gpt-ab layout, a blank disk), as the disk boots afterwards."""
    try:
        found = probe(disk)
    except EngineKitError:
        return Firmware.UEFI
    if isinstance(found, Installation) and found.layout is DiskLayout.MBR:
        return Firmware.BIOS
    return Firmware.UEFI


def disk_holds(disk: Path) -> str:
    """One line: what the disk holds now."""
    try:
        found = probe(disk)
    except EngineKitError as exc:
        return f"{disk}: unreadable ({exc.message})"
    if isinstance(found, Installation):
        slot = f", slot {found.active_slot}" if found.active_slot else ""
        status = found.upgrade_status.value or "Blank"
        return f"{disk}: Engine {found.version}{slot}, upgrade status {status}"
    return f"{disk}: no Engine ({found.reason})"


def _check(options: MediumBoot) -> None:
    if not options.disk.is_file():
        raise UserInputError(
            f"{options.disk}: not a disk image file",
            hint="give the computer's disk image, e.g. one made by engine-disk create",
        )
    with MediumReader.open(options.medium) as reader:  # else one clear error line
        unattended = reader.manifest.file(ANSWERS_PATH) is not None
    if not unattended and not options.interactive:
        raise UserInputError(
            f"{options.medium}: has no answer file, and without a terminal nobody can answer "
            "the installer's screens",
            hint="run the command on a terminal to drive the screens, or bake answers in: "
            f"engine-media remaster {options.medium} --answers FILE -o unattended.iso",
        )
    if options.medium.resolve() == options.disk.resolve():
        raise UserInputError(
            f"{options.medium}: is the disk itself", hint="give the installer medium"
        )
    if options.record is not None:
        for path in (options.record, *walkthrough_paths(options.record)):
            check_new_output(path)


def walkthrough_paths(cast: Path) -> tuple[Path, Path]:
    """The walkthrough beside a recording: session.cast -> session.walkthrough.{json,md}."""
    stem = cast.with_suffix("")
    return stem.with_name(stem.name + ".walkthrough.json"), stem.with_name(
        stem.name + ".walkthrough.md"
    )


def walkthrough(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per screen shown, in order: its id, title, the text shown, the answer taken (or
    "back"; none for the last one shown) and the seconds since power-on."""
    steps: list[dict[str, Any]] = []
    for event in events:
        if event.get("event") == "screen":
            steps.append(
                {
                    "screen": event.get("screen"),
                    "title": event.get("title", ""),
                    "text": event.get("text", ""),
                    "answer": None,
                    "t": event.get("t"),
                }
            )
        elif event.get("event") == "answer" and steps and steps[-1]["answer"] is None:
            if steps[-1]["screen"] == event.get("screen"):
                steps[-1]["answer"] = event.get("answer")
    return steps


def _write_walkthrough(cast: Path, events: list[dict[str, Any]]) -> None:
    steps = walkthrough(events)
    as_json, as_markdown = walkthrough_paths(cast)
    as_json.write_text(json.dumps(steps, indent=2) + "\n")
    lines = [f"# Walkthrough: {cast.name}", ""]
    for number, step in enumerate(steps, 1):
        lines += [f"## {number}. {step['title']}", ""]
        lines += [f"Screen `{step['screen']}`, {float(step['t'] or 0):.1f} s after power-on.", ""]
        if step["text"]:
            lines += ["```", str(step["text"]), "```", ""]
        if step["answer"] is not None:
            lines += [f"Answer: **{step['answer']}**", ""]
    as_markdown.write_text("\n".join(lines))


def _say(options: MediumBoot, line: str) -> None:
    if not options.json:
        print(line, flush=True)


def _show(options: MediumBoot, event: dict[str, Any]) -> None:
    print(json.dumps(event) if options.json else describe_event(event), flush=True)


def _follow(options: MediumBoot, machine: QemuMachine, events_log: Path) -> str:
    """Print the events while the machine runs; why the run ended."""
    shown = 0
    deadline = time.monotonic() + options.timeout
    while True:
        running = machine.running()
        events = read_events(events_log.read_bytes()) if events_log.exists() else []
        for event in events[shown:]:
            _show(options, event)
        shown = len(events)
        if not running:
            return "exited"
        if time.monotonic() > deadline:
            return "timed-out"
        time.sleep(0.2)


def _run_installer(options: MediumBoot, tmp: Path) -> Outcome:
    medium_kind = DriveKind.USB if options.usb else DriveKind.CDROM
    events_log = tmp / "events.jsonl"
    events_log.touch()
    console = tmp / "console.sock" if options.interactive else None
    spec = BootSpec(
        options.firmware,
        (
            Drive(options.medium, medium_kind, snapshot=options.usb),
            Drive(options.disk, BUSES[options.bus]),
        ),
        memory_mb=1024,
        events_log=events_log,
        console_socket=console,
    )
    with ExitStack() as stack:
        stack.enter_context(disk_lock(options.disk, exclusive=True))
        recorder = None
        if options.record is not None:
            size = reported_size(sys.stdout.fileno()) or TerminalSize.known_or_default(0, 0)
            title = f"Engine installer: {options.medium.name} -> {options.disk.name}"
            recorder = stack.enter_context(
                CastRecorder(options.record, size.columns, size.rows, title)
            )
        machine = stack.enter_context(QemuMachine(spec))
        if console is not None:
            end = relay(console, machine.running, recorder=recorder)
            why = RELAY_ENDS[end]
            if end is RelayEnd.HANGUP:
                leave_closed_terminal()  # what follows goes to the log, if there is one
                print(f"[{end.value}: the terminal closed, the computer was stopped]", flush=True)
            elif end is not RelayEnd.EXITED:
                print(f"\r\n[{end.value}: the computer was stopped]\r", flush=True)
        else:
            why = _follow(options, machine, events_log)
    events = read_events(events_log.read_bytes())
    if options.record is not None:
        _write_walkthrough(options.record, events)
    names = [e.get("event") for e in events]
    if why != "exited":
        return Outcome(events, why)
    if "failed" in names:
        return Outcome(events, "failed")
    if "finished" in names:
        return Outcome(events, "finished")
    return Outcome(events, "powered-off")


def boot_from_medium(options: MediumBoot) -> int:
    """The whole run; the exit status (0: the new Engine runs, 1: it does not, 130: the user
    stopped it)."""
    _check(options)
    _say(options, f"starting {options.disk} from {options.medium} ({options.firmware})")
    with scratch_tree("medium-boot") as tmp:
        outcome = _run_installer(options, tmp)
    holds = disk_holds(options.disk)
    rebooted = outcome.events and outcome.events[-1].get("event") == "rebooting"
    if outcome.ended == "finished" and rebooted:
        _say(options, "the installer restarted the computer: booting its disk")
        try:
            result = boot_installed_disk(options.disk, bus=BUSES[options.bus])
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM or a closed terminal: the computer is off
            _say(options, f"stopped while the disk booted; {disk_holds(options.disk)}")
            raise
        from commands.engine_disk import boot_text

        if options.json:
            print(json.dumps({"result": "booted", "boot": result.as_json()}), flush=True)
        else:
            print(boot_text(result), flush=True)
            print(disk_holds(options.disk), flush=True)
        return 0 if result.ok else 1
    summary = {
        "finished": "the installer finished and powered the computer off",
        "failed": "the installer failed",
        "stopped": "stopped by the user",
        "hangup": "the terminal closed: the computer was stopped",
        "timed-out": f"no end within {options.timeout:g} s: the computer was stopped",
        "powered-off": "the computer powered off before the installer finished",
    }[outcome.ended]
    failed = [e for e in outcome.events if e.get("event") == "failed"]
    if failed:
        summary += f": {failed[-1].get('error')}"
    if options.json:
        print(json.dumps({"result": outcome.ended, "summary": summary, "disk": holds}), flush=True)
    else:
        print(f"{summary}; {holds}", flush=True)
    if outcome.ended == "finished":
        return 0
    return 130 if outcome.ended in ("stopped", "hangup") else 1
