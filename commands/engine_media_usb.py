"""`engine-media usb list|write|verify`: find sticks, write the ISO safely, read it back.

The handlers here are thin: discovery and policy decide what is shown and refused, the writer
does the copying; this module asks for the typed confirmation, draws one progress bar per
target (rate and ETA), prints the result table and picks the exit status. Each sub-command
sets `handler` (args -> exit status) for `engine-media` to call.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from enginekit.cli import add_json_option, print_error, print_json
from enginekit.errors import EngineKitError, Interrupted, UserInputError
from enginekit.identity import medium_relation
from enginekit.process import require_tool, run
from enginekit.sizes import human_size, parse_size
from media.errors import InvalidISO, TargetRefused, VerificationFailed
from media.usb import discovery, policy

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID
    from rich.table import Table

    from media.usb.copier import Phase
    from media.usb.copier import Progress as CopyProgress
    from media.usb.writer import TargetResult

# Every `engine-media` command builds this parser; the copier, the writer and rich's progress
# and table modules are imported by the handlers that need them, keeping start-up short.

# Test seam: throttle writing (bytes per second, e.g. "8M") so an interrupt lands mid-write.
MAX_RATE_ENV = "ENGINEKIT_USB_MAX_RATE"

ISO_MAGIC_OFFSET = 32769  # "CD001" of the primary volume descriptor (sector 16, byte 1)


_Parser = TypeVar("_Parser", bound=argparse.ArgumentParser)


def add_usb_commands(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    """Register `usb list|write|verify` under `engine-media`."""
    usb = subparsers.add_parser(
        "usb",
        help="find, write and verify USB sticks",
        description="Find USB sticks, write the Engine ISO to them safely, read them back.",
    )
    commands = usb.add_subparsers(dest="usb_command", metavar="COMMAND", required=True)

    listing = commands.add_parser(
        "list", help="list USB sticks and removable disks", description=_LIST_HELP
    )
    add_json_option(listing, "the disks")
    listing.add_argument(
        "--all", action="store_true", help="also show hidden disks and why each is hidden"
    )
    listing.add_argument(
        "--image",
        type=Path,
        metavar="ISO",
        help="also hide disks too small for this ISO, and the disk that holds it",
    )
    _debug_option(listing)
    listing.set_defaults(handler=cmd_list)

    write = commands.add_parser(
        "write", help="write an ISO to one or more sticks", description=_WRITE_HELP
    )
    write.add_argument("image", type=Path, metavar="ISO", help="the Engine installer ISO")
    write.add_argument(
        "targets", type=Path, nargs="+", metavar="TARGET", help="whole-disk device or file"
    )
    write.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    write.add_argument("--no-verify", action="store_true", help="skip the read-back check")
    write.add_argument(
        "--unmount", action="store_true", help="unmount the targets' mounted partitions first"
    )
    write.add_argument("--force", action="store_true", help="allow non-removable (internal) disks")
    write.add_argument(
        "--allow-large",
        action="store_true",
        help="with --yes: allow disks above 64 GB (instead of typing the disk's name)",
    )
    add_json_option(write, "each target's status, bytes written and timings")
    _debug_option(write)
    write.set_defaults(handler=cmd_write)

    verify = commands.add_parser(
        "verify", help="read a stick back and compare it with the ISO", description=_VERIFY_HELP
    )
    verify.add_argument(
        "image", type=Path, metavar="ISO", help="the ISO the stick was written from"
    )
    verify.add_argument("target", type=Path, metavar="TARGET", help="whole-disk device or file")
    add_json_option(verify, "whether the target matches, and where it first differs")
    _debug_option(verify)
    verify.set_defaults(handler=cmd_verify)


def _debug_option(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: the sub-command's default must not undo `engine-media --debug usb ...`.
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log every command run and show tracebacks",
    )


_LIST_HELP = (
    "Show USB-attached and removable whole disks with model, serial, size and mounted "
    "partitions. --all also lists the hidden disks (system disk, internal, no medium, "
    "read-only, and with --image: too small, holds the image) with the reason each is hidden."
)
_WRITE_HELP = (
    "Write ISO to each TARGET (a whole-disk block device, or an existing regular file), "
    "concurrently, then read every target back bypassing the page cache and compare. "
    "System disks, mounted, read-only, too small and internal disks are refused, and so are "
    "files in use as loop devices. Each target's model, serial and size is printed before "
    "anything is written. A disk above 64 GB needs its name typed as a second confirmation; "
    "with --yes it is refused unless --allow-large is given too."
)
_VERIFY_HELP = (
    "Read TARGET back (bypassing the page cache) and compare it with ISO. Exit status 1 when "
    "they differ, 2 for bad input."
)


# ---- helpers --------------------------------------------------------------------------------


def _stdout() -> Console:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    return console


def _stderr() -> Console:
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, width=160)
    return console


def check_image(path: Path) -> int:
    """Size of the ISO, or a clear error: it must be a non-empty ISO 9660 regular file."""
    try:
        st = path.stat()
    except OSError as exc:
        raise UserInputError(f"{path}: {exc.strerror}", hint="give the path of the ISO") from exc
    if not stat.S_ISREG(st.st_mode):
        raise UserInputError(
            f"{path} is not a regular file",
            hint="the ISO comes first, then the targets: usb write ENGINE.iso /dev/sdX",
        )
    try:
        with open(path, "rb") as image:
            image.seek(ISO_MAGIC_OFFSET)
            magic = image.read(5)
    except OSError as exc:
        raise UserInputError(f"{path}: {exc.strerror}", hint="check the ISO's permissions") from exc
    if magic != b"CD001":
        raise InvalidISO(
            f"{path} is not an ISO 9660 image (no CD001 at offset {ISO_MAGIC_OFFSET})",
            hint="the ISO comes first, then the targets: usb write ENGINE.iso /dev/sdX",
        )
    return st.st_size


def _max_rate() -> float | None:
    text = os.environ.get(MAX_RATE_ENV)
    return float(parse_size(text, MAX_RATE_ENV)) if text else None


def _device_json(device: discovery.BlockDeviceInfo, hidden: Sequence[str]) -> dict[str, object]:
    return {
        "path": device.path,
        "model": device.model,
        "vendor": device.vendor,
        "serial": device.serial,
        "size_bytes": device.size_bytes,
        "bus": str(device.bus),
        "removable": device.removable,
        "read_only": device.read_only,
        "mounted_partitions": [
            {"device": m.device, "mountpoint": m.mountpoint} for m in device.mounted_partitions
        ],
        "holds": sorted(str(h) for h in device.holds),
        "hidden": list(hidden),
    }


def _size_text(size: int) -> str:
    """Both unit systems: sticks are sold in GB, the kernel counts GiB."""
    return f"{human_size(size)} ({size / 1000**3:.1f} GB)"


# ---- usb list ---------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    image: Path | None = args.image
    image_size = check_image(image) if image is not None else None
    # Unattached loop and zram devices are noise (lsblk hides them too).
    disks = [d for d in discovery.list_disks(image) if d.size_bytes or not d.bus.is_virtual]
    rows = [(disk, policy.hidden_reasons(disk, image_size)) for disk in disks]
    if not args.all:
        rows = [(disk, hidden) for disk, hidden in rows if not hidden]
    if args.json:
        print(json.dumps([_device_json(d, h) for d, h in rows], indent=2))
        return 0
    if not rows:
        sys.stderr.write(
            "no USB sticks or removable disks found "
            "(use --all to see every disk and why it is hidden)\n"
        )
        return 0
    table = Table(box=None, pad_edge=False)
    for column in ("DEVICE", "MODEL", "SERIAL", "SIZE", "BUS", "MOUNTED"):
        table.add_column(column, overflow="fold")
    if args.all:
        table.add_column("HIDDEN BECAUSE", overflow="fold")
    for disk, hidden in rows:
        mounted = ", ".join(f"{m.device} on {m.mountpoint}" for m in disk.mounted_partitions)
        cells = [
            disk.path,
            " ".join(p for p in (disk.vendor, disk.model) if p) or "-",
            disk.serial or "-",
            _size_text(disk.size_bytes),
            str(disk.bus),
            mounted or "-",
        ]
        if args.all:
            cells.append("; ".join(hidden) or "-")
        table.add_row(*cells)
    _stdout().print(table)
    return 0


# ---- usb write ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Accepted:
    path: Path
    device: discovery.BlockDeviceInfo | None  # None for a regular file
    size: int
    identity: str | None = None  # the medium that was checked (block devices only)


def _examine(
    path: Path, image: Path, image_size: int, options: policy.WriteOptions
) -> _Accepted | tuple[policy.Refusal, ...]:
    try:
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise TargetRefused(f"refusing {path}: {exc.strerror}") from exc
    kind = policy.target_kind(str(path), st.st_mode if st else None)
    if isinstance(kind, policy.Refusal):
        return (kind,)
    assert st is not None
    if kind is policy.TargetKind.BLOCK_DEVICE:
        # Read before the description, so a stick swapped in meanwhile cannot pass as checked.
        identity = discovery.device_identity(f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
        device = discovery.describe_block_device(path, image)
        refusals = policy.device_refusals(device, image_size, options)
        return refusals or _Accepted(path, device, device.size_bytes, identity)
    fs = os.statvfs(path)
    info = policy.FileTargetInfo(
        path=str(path),
        size_bytes=st.st_size,
        writable=os.access(path, os.W_OK),
        is_the_image=medium_relation(path, image) is not None,
        free_bytes=fs.f_bavail * fs.f_frsize,
        loop_users=tuple(discovery.loop_users(path)),
    )
    return policy.file_refusals(info, image_size) or _Accepted(path, None, st.st_size)


def _ask(prompt: str) -> str:
    sys.stderr.write(prompt)
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not sys.stdin.isatty():
        sys.stderr.write("\n")  # the answer was not echoed: keep the next output on its own line
    if not line:
        raise UserInputError(
            "no confirmation given; nothing was written", hint="answer the prompt, or add --yes"
        )
    return line.strip()


def _show_targets(heading: str, accepted: Sequence[_Accepted]) -> None:
    """Name every target (model, serial, size), with or without a question after it."""
    err = sys.stderr
    err.write(heading + "\n")
    for target in accepted:
        if target.device is None:
            err.write(f"  {target.path}  regular file, {_size_text(target.size)}\n")
        else:
            dev = target.device
            err.write(f"  {dev.path}  {dev.describe()}  {_size_text(dev.size_bytes)}  {dev.bus}\n")


def _confirm(image: Path, image_size: int, accepted: Sequence[_Accepted]) -> None:
    err = sys.stderr
    _show_targets(f"About to ERASE and write {image.name} ({human_size(image_size)}) to:", accepted)
    err.write("Everything on them will be lost.\n")
    if _ask(f"Type 'yes' to erase {len(accepted)} target(s): ").lower() != "yes":
        raise UserInputError(
            "not confirmed; nothing was written",
            hint="type 'yes' in full to erase the targets, or add --yes",
        )
    for target in accepted:
        large = target.device
        if large is not None and policy.needs_large_disk_confirmation(large):
            err.write(
                f"{large.path} is {_size_text(large.size_bytes)}, larger than 64 GB: this is "
                "rarely a USB stick.\n"
            )
            if _ask(f"Type its name '{large.name}' to confirm it is the right disk: ") != (
                large.name
            ):
                raise UserInputError(
                    f"{large.path} not confirmed; nothing was written",
                    hint=f"type the disk's name ({large.name}) exactly, or leave it out",
                )


def _unmount(target: _Accepted) -> None:
    if target.device is None:
        return
    umount = require_tool("umount", "mount")
    # Deepest first, so nested mounts come off before their parents.
    for mount in sorted(target.device.mounted_partitions, key=lambda m: -len(m.mountpoint)):
        if mount.mountpoint == "[swap]":
            continue
        run([umount, mount.mountpoint])


class _ProgressDisplay:
    """One rich progress bar per target; updated from the copier threads."""

    def __init__(self, targets: Sequence[Path], total: int) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress: Progress = Progress(
            TextColumn("{task.fields[target]}"),
            TextColumn("{task.fields[phase]:<8}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=_stderr(),
        )
        self._lock = threading.Lock()
        self._phase: dict[str, Phase] = {}
        self._tasks: dict[str, TaskID] = {
            str(t): self.progress.add_task(str(t), total=total, target=str(t), phase="queued")
            for t in targets
        }

    def update(self, target: str, progress: CopyProgress) -> None:
        task = self._tasks[target]
        with self._lock:
            if self._phase.get(target) is not progress.phase:
                self._phase[target] = progress.phase
                # A new phase restarts the bar so rate and ETA describe this phase only.
                self.progress.reset(
                    task, total=progress.total, target=target, phase=str(progress.phase)
                )
        self.progress.update(task, completed=progress.done)


def _result_table(results: Sequence[TargetResult]) -> Table:
    from rich.table import Table

    table = Table(title="Result", title_justify="left", box=None, pad_edge=False)
    for column in ("TARGET", "STATUS", "WRITTEN", "WRITE RATE", "VERIFY", "DETAIL"):
        table.add_column(column, overflow="fold")
    for r in results:
        rate = f"{human_size(int(r.write_rate))}/s" if r.write_rate else "-"
        verified = f"{r.verify_seconds:.1f} s" if r.verify_seconds else "-"
        table.add_row(
            r.target,
            str(r.status),
            f"{human_size(r.bytes_written)} of {human_size(r.image_size)}",
            rate,
            verified,
            r.message or "-",
        )
    return table


def _interrupted(results: Sequence[TargetResult]) -> Interrupted:
    """What Ctrl-C left behind: sticks cut off mid-write will not boot; sticks stopped while
    being read back were fully written but are unproven."""
    from media.usb.writer import TargetStatus

    cut = [r.target for r in results if r.status is TargetStatus.INCOMPLETE]
    unverified = [r.target for r in results if r.status is TargetStatus.NOT_VERIFIED]
    parts = []
    if cut:
        parts.append(f"{', '.join(cut)} {'is' if len(cut) == 1 else 'are'} incomplete "
                     "and will not boot")  # fmt: skip
    if unverified:
        parts.append(f"{', '.join(unverified)} {'was' if len(unverified) == 1 else 'were'} "
                     "written completely but not verified")  # fmt: skip
    if not parts:
        return Interrupted(
            "interrupted after every target had finished",
            hint="the result above shows each target's status",
        )
    hints = []
    if cut:
        hints.append(f"write {'it' if len(cut) == 1 else 'them'} again before use")
    if unverified:
        hints.append("check with 'engine-media usb verify ISO TARGET'")
    return Interrupted("interrupted: " + "; ".join(parts), hint="; ".join(hints))


def cmd_write(args: argparse.Namespace) -> int:
    from media.usb.writer import TargetResult, TargetStatus, write_many

    image: Path = args.image
    image_size = check_image(image)
    options = policy.WriteOptions(
        force=args.force, unmount=args.unmount, large_ok=not args.yes or args.allow_large
    )
    seen: set[str] = set()
    for target in args.targets:
        key = os.path.realpath(target)
        if key in seen:
            raise UserInputError(f"{target} is given twice", hint="name each target once")
        seen.add(key)

    refused: list[TargetResult] = []
    accepted: list[_Accepted] = []
    errors: list[EngineKitError] = []
    for target in args.targets:
        verdict = _examine(target, image, image_size, options)
        if isinstance(verdict, _Accepted):
            accepted.append(verdict)
            continue
        errors.append(_refused(str(target), verdict))
        print_error(errors[-1])
        refused.append(
            TargetResult(
                str(target),
                TargetStatus.REFUSED,
                image_size,
                message="; ".join(r.reason for r in verdict),
            )
        )
    if not accepted:
        if args.json:
            print_json(_write_json(image, refused, errors, TargetRefused.exit_status))
        return TargetRefused.exit_status
    if args.yes:
        _show_targets(f"Writing {image.name} ({human_size(image_size)}) to:", accepted)
    else:
        _confirm(image, image_size, accepted)
    if options.unmount:
        for target in accepted:
            _unmount(target)

    paths = [t.path for t in accepted]
    display = _ProgressDisplay(paths, image_size)
    with display.progress:
        report = write_many(
            image,
            paths,
            verify=not args.no_verify,
            on_progress=display.update,
            max_rate=_max_rate(),
            identities={t.path: t.identity for t in accepted if t.identity is not None},
        )
    order = {str(t): i for i, t in enumerate(args.targets)}
    results = sorted(refused + list(report.results), key=lambda r: order.get(r.target, 0))
    if not args.json:
        _stdout().print(_result_table(results))
    if report.interrupted:
        raise _interrupted(report.results).with_result(_write_json(image, results, [], 130))
    for r in report.results:
        if not r.status.succeeded:
            errors.append(_write_failed(image, r))
            print_error(errors[-1])
    status = 0 if not refused and report.all_succeeded else 1
    if args.json:
        print_json(_write_json(image, results, errors, status))
    return status


def _write_failed(image: Path, result: TargetResult) -> EngineKitError:
    """The error line of a target that was written but failed or did not verify."""
    return VerificationFailed(
        f"{result.target}: {result.status}: {result.message}",
        hint=f"write it again: engine-media usb write {image} {result.target}; "
        "a stick that fails twice is faulty",
    )


def _write_json(
    image: Path, results: Sequence[TargetResult], errors: Sequence[EngineKitError], status: int
) -> dict[str, object]:
    """`usb write --json`: every target's outcome; with failures, the error keys of the
    frame's JSON error object (the first error, and every error's line in `details`)."""
    doc: dict[str, object] = {
        "iso": str(image),
        "targets": [
            {
                "target": r.target,
                "status": str(r.status),
                "ok": r.status.succeeded,
                "image_size": r.image_size,
                "bytes_written": r.bytes_written,
                "write_seconds": round(r.write_seconds, 2),
                "verify_seconds": round(r.verify_seconds, 2),
                "first_bad_offset": r.first_bad_offset,
                "message": r.message,
            }
            for r in results
        ],
        "ok": status == 0,
    }
    if errors:
        first = errors[0]
        doc |= {
            "error": first.message if len(errors) == 1 else f"{len(errors)} targets failed",
            "hint": first.hint,
            "details": [e.message for e in errors] if len(errors) > 1 else list(first.details),
            "exit_status": status,
        }
    return doc


def _refused(target: str, refusals: tuple[policy.Refusal, ...]) -> TargetRefused:
    """One error per refused target: a single reason inline, several as indented details.

    The policy lists reasons most fundamental first (a partition, the system disk, ...), so
    the first one's hint is the one that helps: fixing a later reason alone would not do.
    """
    if len(refusals) == 1:
        return TargetRefused(refusals[0].line(), hint=refusals[0].hint)
    return TargetRefused(
        f"refusing {target}: {len(refusals)} reasons",
        hint=refusals[0].hint,
        details=tuple(r.reason for r in refusals),
    )


# ---- usb verify -----------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    from media.usb.blockdev import open_target
    from media.usb.copier import ImageCopier, WriteInterrupted

    image: Path = args.image
    image_size = check_image(image)
    target_path: Path = args.target
    try:
        mode: int | None = os.stat(target_path).st_mode
    except FileNotFoundError:
        mode = None
    kind = policy.target_kind(str(target_path), mode)
    if isinstance(kind, policy.Refusal):
        raise TargetRefused(kind.line(), hint=kind.hint)
    display = _ProgressDisplay([target_path], image_size)
    stop = threading.Event()
    copier = ImageCopier(
        image,
        open_target(target_path),
        on_progress=lambda p: display.update(str(target_path), p),
        stop=stop,
    )
    try:
        with display.progress:
            result = copier.verify()
    except (KeyboardInterrupt, WriteInterrupted):
        raise Interrupted(
            f"verification of {target_path} stopped; nothing was changed",
            hint="run 'engine-media usb verify' again to check the stick",
        ) from None
    found = {
        "iso": str(image),
        "target": str(target_path),
        "ok": result.ok,
        "bytes_checked": result.bytes_checked,
        "first_bad_offset": result.first_bad_offset,
        "detail": result.detail,
        "seconds": round(result.seconds, 2),
    }
    if not result.ok:
        raise VerificationFailed(
            result.detail,
            hint=f"write it again: engine-media usb write {image} {target_path}",
        ).with_result(found)
    if args.json:
        print_json(found)
        return 0
    print(
        f"ok: {target_path} matches {image.name} "
        f"({human_size(image_size)} read back in {result.seconds:.1f} s)"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the usb commands on their own (`python -m commands.engine_media_usb usb list`)."""
    from enginekit.cli import ArgumentParser, add_common_options, run_main

    parser = ArgumentParser(prog="engine-media")
    add_common_options(parser)
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=ArgumentParser
    )
    add_usb_commands(subparsers)

    def dispatch(args: argparse.Namespace) -> int:
        status: int = args.handler(args)
        return status

    return run_main(parser, dispatch, argv)


if __name__ == "__main__":
    raise SystemExit(main())
