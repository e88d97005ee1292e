"""`engine-media usb list|write|verify`: find sticks, write the ISO safely, read it back.

The wiring only: the argparse sub-commands and thin handlers. `media.usb.write_flow` plans and
runs a write (image check, target examination, exit status), `media.usb.display` asks and
draws (confirmation, progress bars, tables), discovery and policy decide what is shown and
refused. Each sub-command sets `handler` (args -> exit status) for `engine-media` to call.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from enginekit.cli import add_debug_option, add_json_option, print_error, print_json
from enginekit.errors import EngineKitError, Interrupted
from enginekit.sizes import human_size, parse_size
from media.errors import TargetRefused, VerificationFailed
from media.usb import discovery, display, policy, write_flow
from media.usb.targets import check_image
from media.usb.writer import TargetResult

# Every `engine-media` command builds this parser; the copier, the writer and rich's progress
# and table modules are imported by the handlers that need them, keeping start-up short.

# Test seam: throttle writing (bytes per second, e.g. "8M") so an interrupt lands mid-write.
MAX_RATE_ENV = "ENGINEKIT_USB_MAX_RATE"

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
    add_debug_option(listing)
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
    write.add_argument("--force", action="store_true", help="allow internal disks and loop devices")
    write.add_argument(
        "--allow-large",
        action="store_true",
        help="with --yes: allow disks above 64 GB (instead of typing the disk's name)",
    )
    add_json_option(write, "each target's status, bytes written and timings")
    add_debug_option(write)
    write.set_defaults(handler=cmd_write)

    verify = commands.add_parser(
        "verify", help="read a stick back and compare it with the ISO", description=_VERIFY_HELP
    )
    verify.add_argument(
        "image", type=Path, metavar="ISO", help="the ISO the stick was written from"
    )
    verify.add_argument("target", type=Path, metavar="TARGET", help="whole-disk device or file")
    add_json_option(verify, "whether the target matches, and where it first differs")
    add_debug_option(verify)
    verify.set_defaults(handler=cmd_verify)


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


def _max_rate() -> float | None:
    text = os.environ.get(MAX_RATE_ENV)
    return float(parse_size(text, MAX_RATE_ENV)) if text else None


# ---- usb list ---------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    image: Path | None = args.image
    image_size = check_image(image) if image is not None else None
    # Unattached loop and zram devices are noise (lsblk hides them too).
    disks = [d for d in discovery.list_disks(image) if d.size_bytes or not d.bus.is_virtual]
    rows = [(disk, policy.hidden_reasons(disk, image_size)) for disk in disks]
    if not args.all:
        rows = [(disk, hidden) for disk, hidden in rows if not hidden]
    if args.json:
        print(json.dumps([display.device_json(d, h) for d, h in rows], indent=2))
        return 0
    if not rows:
        sys.stderr.write(
            "no USB sticks or removable disks found "
            "(use --all to see every disk and why it is hidden)\n"
        )
        return 0
    display.stdout_console().print(display.disk_table(rows, args.all))
    return 0


# ---- usb write ------------------------------------------------------------------------------


def cmd_write(args: argparse.Namespace) -> int:
    options = policy.WriteOptions(
        force=args.force, unmount=args.unmount, large_ok=not args.yes or args.allow_large
    )
    plan = write_flow.plan_write(args.image, args.targets, options)
    display.show_duplicates(plan.duplicates)
    errors: list[EngineKitError] = []
    for target, refusals in plan.refused:
        errors.append(write_flow.refusal_error(target, refusals))
        print_error(errors[-1])
    if not plan.accepted:
        if args.json:
            refused_only = write_flow.refused_results(plan)
            print_json(_write_json(plan.image, refused_only, errors, TargetRefused.exit_status))
        return TargetRefused.exit_status
    heading = f"Writing {plan.image.name} ({human_size(plan.image_size)}) to:"
    if args.yes:
        display.show_targets(heading, plan.accepted)
    else:
        display.confirm(plan.image, plan.image_size, plan.accepted)
    bars = display.ProgressDisplay([t.path for t in plan.accepted], plan.image_size)
    with bars.progress:
        outcome = write_flow.execute(
            plan,
            options,
            verify=not args.no_verify,
            on_progress=bars.update,
            max_rate=_max_rate(),
        )
    if not args.json:
        display.stdout_console().print(display.result_table(outcome.results))
    if outcome.interrupted:
        raise write_flow.interrupted_error(outcome.results).with_result(
            _write_json(plan.image, outcome.results, [], 130)
        )
    for r in outcome.failed:
        errors.append(_write_failed(plan.image, r))
        print_error(errors[-1])
    summary = display.summary_line(outcome)
    if summary is not None:
        sys.stderr.write(summary + "\n")
    if args.json:
        print_json(_write_json(plan.image, outcome.results, errors, outcome.exit_status))
    return outcome.exit_status


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
    bars = display.ProgressDisplay([target_path], image_size)
    stop = threading.Event()
    copier = ImageCopier(
        image,
        open_target(target_path),
        on_progress=lambda p: bars.update(str(target_path), p),
        stop=stop,
    )
    try:
        with bars.progress:
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
