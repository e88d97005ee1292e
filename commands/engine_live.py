"""engine-live: the installer the live medium runs, on the computer's own disks.

It finds the installer medium among the machine's block devices (the DVD drive, a stick: the
first one whose manifest reads), offers the fixed disks that do not hold it, and runs the same
model, screens and install engine as `engine-install` with the disk as the target: from the
answer file baked into the medium (`engine/answers.toml`, `engine-media build --answers`) when
it has one, else interactively on the console. Screen 1 is the medium's own boot menu
(isolinux or systemd-boot, `media.boot_menu`): the entry taken there, read from the kernel
command line, is that screen's answer, so the installer's own screens start at screen 2, the
welcome. Every step is also one JSON object per line on the second serial port
(`live_events`), for harnesses that never read screens. "Reboot now" restarts the computer.

A computer with a screen (a VGA text console or a frame buffer, besides the serial console
that is /dev/console) shows the installer on both: engine-live runs itself again on a
pseudo-terminal joined to the serial console and to the screen's first virtual terminal
(`enginekit.console_mirror`), so the screens appear on both and keys typed on either answer
them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from commands.engine_install import print_report, text_progress
from commands.live_events import EVENTS_PORT, EventPort
from disk_images.probe import Installation, probe
from enginekit.cli import ArgumentParser, add_common_options, run_main
from enginekit.console_mirror import common_size, mirrored
from enginekit.errors import EngineKitError, UserInputError
from enginekit.identity import medium_relation
from enginekit.sizes import human_size
from enginekit.terminal import size_from_terminal
from installer import answers as answer_files
from installer.frontends.api import Installer, load_medium, load_target
from installer.frontends.unattended import drive
from installer.model import (
    Answer,
    EulaAnswer,
    ExistingAnswer,
    FinishAnswer,
    KeyboardAnswer,
    ProgressAnswer,
    RegistrationAnswer,
    Screen,
    SummaryAnswer,
    TargetInfo,
)
from installer.plan import ProgressCallback
from media.boot_menu import BootEntry, chosen_entry
from media.manifest import ANSWERS_PATH
from media.reader import MediumReader

SYS_BLOCK = Path("/sys/block")
SYS_CLASS = Path("/sys/class")
SCREEN_TERMINAL = Path("/dev/tty1")
CMDLINE = Path("/proc/cmdline")
SYSRQ_TRIGGER = Path("/proc/sysrq-trigger")
DISK_LINE = "ENGINE DISK {device} {what}"


def _hardware_disks(sys_block: Path) -> list[tuple[str, bool]]:
    """(name, removable) of the block devices backed by hardware (a `device` link)."""
    found = []
    for entry in sorted(sys_block.iterdir()) if sys_block.is_dir() else ():
        removable = entry / "removable"
        if (entry / "device").exists() and removable.is_file():
            found.append((entry.name, removable.read_text().strip() != "0"))
    return found


def fixed_disks(sys_block: Path = SYS_BLOCK) -> tuple[str, ...]:
    """Names of the block devices backed by hardware (a `device` link) that are not removable."""
    return tuple(name for name, removable in _hardware_disks(sys_block) if not removable)


def find_medium(sys_block: Path, dev: Path) -> Path | None:
    """The block device holding an Engine installer medium: removable devices first (the DVD
    drive, a stick), then the others (a stick that says it is fixed)."""
    disks = _hardware_disks(sys_block)
    for name, _removable in sorted(disks, key=lambda d: not d[1]):
        try:
            with MediumReader.open(dev / name):
                return dev / name
        except (EngineKitError, OSError):
            continue
    return None


def target_disks(sys_block: Path, dev: Path, medium: Path) -> tuple[Path, ...]:
    """The fixed disks one may install on: never the medium, nor a disk that holds it."""
    return tuple(
        dev / name
        for name in fixed_disks(sys_block)
        if medium_relation(dev / name, medium) is None and dev / name != medium
    )


def disk_line(device: Path) -> str:
    """The report line for one disk: its Engine version, or why there is none."""
    try:
        result = probe(device)
    except EngineKitError as exc:
        return DISK_LINE.format(device=device, what=f"unreadable reason={exc.message!r}")
    if isinstance(result, Installation):
        return DISK_LINE.format(device=device, what=f"version={result.version}")
    return DISK_LINE.format(device=device, what=f"none kind={result.kind}")


def _describe(target: TargetInfo) -> dict[str, object]:
    found = target.installation
    return {
        "device": str(target.path),
        "disk_id": target.disk_id,
        "size_bytes": target.size_bytes,
        "engine": found.version if found is not None else None,
    }


def _disk_title(target: TargetInfo) -> str:
    found = target.installation
    what = f"Engine {found.version}" if found is not None else "no Engine"
    return f"{target.path} ({human_size(target.size_bytes)}, {what}, disk id {target.disk_id})"


def _choose_disk(targets: list[TargetInfo], answers: answer_files.AnswerFile | None) -> TargetInfo:
    """The disk this run installs on: the one the answers name, the only one, or the user's
    pick on the console."""
    listing = "; ".join(_disk_title(t) for t in targets)
    if answers is not None and answers.disk is not None:
        for target in targets:
            if answer_files.names_disk(answers.disk, target):
                return target
        raise UserInputError(
            f"{answers.source}: disk.target: names {answers.disk!r}, which is not one of this "
            f"computer's disks: {listing}; nothing was written",
            hint="name one of the disks listed, by device path or disk id",
        )
    if len(targets) == 1:
        return targets[0]
    if answers is not None:
        raise UserInputError(
            f"{answers.source}: disk.target: is needed: this computer has {len(targets)} "
            f"disks: {listing}; nothing was written",
            hint='add [disk] target = "/dev/sda" (or the disk id) to the answer file',
        )
    import questionary

    choice = questionary.select(
        "Install Engine on which disk?",
        choices=[questionary.Choice(title=_disk_title(t), value=str(t.path)) for t in targets],
        qmark=">",
    ).unsafe_ask()
    return next(t for t in targets if str(t.path) == choice)


def baked_answers(medium: Path) -> answer_files.AnswerFile | None:
    """The answer file baked into the medium (checked against the manifest, then the
    schema), or None for an interactive medium."""
    with MediumReader.open(medium) as reader:
        if reader.manifest.file(ANSWERS_PATH) is None:
            return None
        data = reader.read_listed(ANSWERS_PATH)
    return answer_files.parse_answers(data, f"{medium}: {ANSWERS_PATH}")


ORDER = list(Screen)


def describe_answer(answer: Answer | None) -> str:
    """A screen's answer in a few words, for the events (a token is never among them)."""
    if isinstance(answer, EulaAnswer):
        return "accept" if answer.accept else "decline"
    if isinstance(answer, KeyboardAnswer):
        return answer.layout
    if isinstance(answer, ExistingAnswer):
        return answer.action.value
    if isinstance(answer, RegistrationAnswer):
        if answer.keep:
            return "keep"
        return f"{answer.mode} {answer.server}" if answer.server else str(answer.mode)
    if isinstance(answer, SummaryAnswer):
        return "confirm" if answer.confirm else "cancel"
    if isinstance(answer, FinishAnswer):
        return "reboot" if answer.reboot else "no-reboot"
    if isinstance(answer, ProgressAnswer):
        return "installed"
    return "next" if answer is not None else "-"


def _emit_screen(installer: Installer, events: EventPort) -> None:
    shown = installer.view
    events.emit(
        "screen",
        screen=installer.screen.value,
        title=shown.heading or shown.title,
        text=shown.text,
    )


def _screen_events(installer: Installer, events: EventPort) -> Callable[[Screen], None]:
    """On each move: the answer the screen left got (or "back"), then the new screen."""
    left = [installer.screen]

    def moved(screen: Screen) -> None:
        before = left[0]
        if screen is not before:
            going_back = ORDER.index(screen) < ORDER.index(before)
            answer = "back" if going_back else describe_answer(installer.model.answer(before))
            events.emit("answer", screen=before.value, answer=answer)
        left[0] = screen
        if not screen.terminal:
            _emit_screen(installer, events)

    return moved


def _answer_boot_menu(installer: Installer, events: EventPort, cmdline: Path) -> None:
    """Screen 1 was the medium's boot menu, drawn by its boot loader before Linux started:
    report it and the entry taken there, and move the installer past it."""
    try:
        taken = chosen_entry(cmdline.read_text())
    except OSError:
        taken = chosen_entry("")  # no command line to read: the default entry
    menu = "\n".join(entry.menu_title for entry in BootEntry)
    events.emit(
        "screen",
        screen=Screen.BOOT_MENU.value,
        title="Boot menu",
        text=menu,
        shown_by="boot loader",
    )
    events.emit("answer", screen=Screen.BOOT_MENU.value, answer=taken.value)
    installer.choose("install")  # the check entry installs too, once the medium passed


def _progress(events: EventPort, echo: ProgressCallback) -> ProgressCallback:
    def progress(step: str, fraction: float) -> None:
        events.emit("step", step=step, fraction=round(fraction, 3))
        echo(step, fraction)

    return progress


def _install(args: argparse.Namespace, events: EventPort) -> Installer:
    sys_block, dev = Path(args.sys_block), Path(args.dev)
    for name in fixed_disks(sys_block):
        print(disk_line(dev / name), flush=True)
    medium_path = find_medium(sys_block, dev)
    if medium_path is None:
        raise UserInputError(
            "no Engine installer medium found in this computer's drives",
            hint="insert the Engine DVD or stick and start the computer again",
        )
    answers = (
        answer_files.load_answers(Path(args.answers))
        if args.answers
        else baked_answers(medium_path)
    )
    medium = load_medium(medium_path)
    targets = [
        load_target(path, block_device=True) for path in target_disks(sys_block, dev, medium_path)
    ]
    events.emit("disks", medium=str(medium_path), disks=[_describe(t) for t in targets])
    if not targets:
        raise UserInputError(
            "this computer has no disk to install Engine on (the installer medium is not one)",
            hint="attach the computer's disk and start it again",
        )
    target = _choose_disk(targets, answers)
    installer = Installer(medium, target)
    _answer_boot_menu(installer, events, Path(args.cmdline))
    installer.on_screen = _screen_events(installer, events)
    _emit_screen(installer, events)
    if answers is not None:
        events.emit("answers", source=answers.source, disk=str(target.path))
        report = drive(installer, answers, _progress(events, text_progress(sys.stdout)))
        if report is None:
            raise UserInputError(
                f"{answers.source}: eula.accept is false: the licence was declined; "
                "nothing was written",
                hint="set [eula] accept = true to install",
            )
        print_report(report)
        return installer
    from installer.frontends.interactive import run_interactive

    run_interactive(installer)
    return installer


def _reboot_now(events: EventPort) -> None:
    """Restart the computer at once: the init has no service manager to stop."""
    events.emit("rebooting")
    os.sync()
    SYSRQ_TRIGGER.write_text("b")


def has_screen(sys_class: Path = SYS_CLASS) -> bool:
    """Whether the computer has a screen the kernel draws a console on: a virtual-terminal
    console other than the dummy one a computer without a display gets, or a frame buffer
    (which the frame buffer console takes over at the first output)."""
    if any((sys_class / "graphics").glob("fb[0-9]*")):
        return True
    for console in sorted((sys_class / "vtconsole").glob("vtcon[0-9]*")):
        try:
            name = (console / "name").read_text()
            bound = (console / "bind").read_text().strip() == "1"
        except OSError:
            continue
        if bound and "dummy" not in name:
            return True
    return False


def _on_every_console(screen: Path, argv: Sequence[str]) -> int | None:
    """engine-live `argv` again, shown on this terminal and on `screen`; None when the screen's
    terminal cannot be opened (the installer then runs on this terminal alone)."""
    try:
        screen_fd = os.open(screen, os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return None
    try:
        size = common_size([screen_fd], fallback=size_from_terminal(sys.stdout.fileno()))
        rerun = [sys.executable, "-m", "commands.engine_live", "--no-mirror", *argv]
        return mirrored(rerun, [sys.stdin.fileno(), screen_fd], size)
    finally:
        os.close(screen_fd)


def _live(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if args.mirror and os.isatty(sys.stdin.fileno()) and has_screen(Path(args.sys_class)):
        status = _on_every_console(Path(args.screen), argv)
        if status is not None:
            return status
    with EventPort(Path(args.events)) as events:
        events.emit("booted")
        try:
            installer = _install(args, events)
        except EngineKitError as exc:
            events.emit("failed", error=exc.message)
            raise
        except KeyboardInterrupt:
            events.emit("failed", error="interrupted")
            raise
        report = installer.report
        if report is None:
            events.emit("failed", error="the run was cancelled; nothing was written")
            return 2
        events.emit(
            "finished",
            version=report.installed_version,
            slot=report.slot,
            upgrade_status=report.upgrade_status.value,
            device=str(report.plan.target),
        )
        finish = installer.model.answer(Screen.FINISH)
        if args.reboot and isinstance(finish, FinishAnswer) and finish.reboot:
            _reboot_now(events)
    return 0


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="engine-live",
        description="install or upgrade Engine on this computer's disk (the live installer)",
    )
    add_common_options(parser)
    parser.add_argument(
        "--sys-block",
        default=str(SYS_BLOCK),
        metavar="DIR",
        help=f"where the kernel lists block devices (default {SYS_BLOCK})",
    )
    parser.add_argument(
        "--dev", default="/dev", metavar="DIR", help="where the device nodes are (default /dev)"
    )
    parser.add_argument(
        "--cmdline",
        default=str(CMDLINE),
        metavar="FILE",
        help=f"the kernel command line, which names the boot menu entry taken (default {CMDLINE})",
    )
    parser.add_argument(
        "--answers",
        metavar="FILE",
        help=f"run from this answer file (default: the medium's {ANSWERS_PATH}, if it has one)",
    )
    parser.add_argument(
        "--events",
        default=str(EVENTS_PORT),
        metavar="PORT",
        help=f"where the JSON event lines go (default {EVENTS_PORT}, the second serial port)",
    )
    parser.add_argument(
        "--sys-class",
        default=str(SYS_CLASS),
        metavar="DIR",
        help=f"where the kernel lists its consoles and frame buffers (default {SYS_CLASS})",
    )
    parser.add_argument(
        "--screen",
        default=str(SCREEN_TERMINAL),
        metavar="TTY",
        help=f"the screen's terminal, when the computer has a screen (default {SCREEN_TERMINAL})",
    )
    parser.add_argument(
        "--no-mirror",
        dest="mirror",
        action="store_false",
        help="run on this terminal only, even when the computer has a screen",
    )
    parser.add_argument(
        "--no-reboot",
        dest="reboot",
        action="store_false",
        help="when the installer is done, stay up instead of rebooting",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    return run_main(build_parser(), lambda args: _live(args, given), argv)


if __name__ == "__main__":
    raise SystemExit(main())
