"""`engine-disk`: create, inspect and boot Engine disk images.

`create` and `inspect` come from `disk_images.cli`; this module adds `create --engine VERSION`
(a reference installation through the real fresh-install path, with sample VMs) and `boot`
(boot the installed disk in QEMU and complete its first boot). `boot` handles a failed pending
slot within the same command: systemd-boot has then renamed the new entry to `+0-1`, so the
command powers the disk on again at once, the old slot boots, and the status becomes "Failed".
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from disk_images.boot import DiskBootResult, boot_installed_disk
from disk_images.cli import add_disk_commands, cmd_create
from enginekit.cli import ArgumentParser, add_common_options, run_main
from enginekit.errors import EngineKitError
from enginekit.sizes import human_size, parse_size
from enginekit.versions import REFERENCE_BUILDS, reference_build

DEFAULT_BOOT_TIMEOUT = 120.0


class BootFailed(EngineKitError):
    """The disk booted no Engine at all (every attempt failed). The disk's fault (or a too
    short --timeout), not the host's: exit status 1, apart from bad input (2) and host (3)."""

    exit_status = 1


def positive_seconds(text: str) -> float:
    """argparse type for --timeout: a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds (got {text})")
    return value


def cmd_create_engine(args: argparse.Namespace) -> int:
    if args.engine is None:
        return cmd_create(args)
    from installer.reference_disk import create_reference_disk

    reference_build(args.engine)  # one clear line for an unknown version
    size = parse_size(args.size)
    create_reference_disk(args.disk, args.engine, size, force=args.force, with_vms=not args.no_vms)
    vms = "no VMs" if args.no_vms else "4 sample VMs (2 shared, 1 custom, 1 local)"
    print(
        f"created {args.disk}: {human_size(size)} sparse disk image with a reference "
        f"Engine {args.engine} installation and {vms}"
    )
    return 0


def boot_text(result: DiskBootResult) -> str:
    lines = []
    for number, attempt in enumerate(result.attempts, start=1):
        entry = f" via {attempt.entry}" if attempt.entry else ""
        if attempt.running:
            assert attempt.slot is not None
            lines.append(
                f"boot {number}{entry}: ENGINE RUNNING version={attempt.version} "
                f"slot={attempt.slot.value} vms={attempt.vms} ({attempt.seconds:.1f} s)"
            )
        else:
            lines.append(f"boot {number}{entry}: failed: {attempt.failure}")
            lines.append(f"  console: {attempt.console_tail}")
    if result.fell_back:
        lines.append("the new slot did not boot; the old slot booted instead")
    if result.blessed:
        lines.append(f"first boot completed: {result.blessed} marked good")
    active = result.active_slot.value if result.active_slot else "-"
    lines.append(f"active slot: {active}; upgrade status: {result.upgrade_status.label}")
    return "\n".join(lines)


def cmd_boot(args: argparse.Namespace) -> int:
    result = boot_installed_disk(args.disk, timeout=args.timeout)
    if args.json:
        json.dump(result.as_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(boot_text(result))
    if not result.ok:
        last = result.attempts[-1] if result.attempts else None
        raise BootFailed(
            f"{args.disk}: no Engine booted ({last.failure if last else 'no attempt'})",
            hint="the console lines above show where it stopped",
        )
    return 0


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="engine-disk", description="Engine disk images.")
    add_common_options(parser)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = add_disk_commands(subparsers)
    create = commands["create"]
    create.add_argument(
        "--engine",
        metavar="VERSION",
        choices=sorted(REFERENCE_BUILDS),
        help="install the reference Engine VERSION on the new disk through the real "
        f"installer, with sample VMs (one of {', '.join(sorted(REFERENCE_BUILDS))})",
    )
    create.add_argument(
        "--no-vms", action="store_true", help="with --engine: do not add the sample VMs"
    )
    create.set_defaults(handler=cmd_create_engine)

    boot = subparsers.add_parser(
        "boot",
        help="boot an installed Engine disk in QEMU and complete its first boot",
        description="Boot the Engine installed on DISK (UEFI/OVMF for gpt-ab, BIOS for mbr) "
        "and wait for ENGINE RUNNING. Then complete the first boot: the booted entry is "
        "marked good and the upgrade status becomes Blank; if a newly installed slot fails, "
        "the disk is booted again at once, falls back to the old slot, and the status "
        "becomes Failed. A boot that times out leaves the upgrade status as it was. Writes "
        "to DISK (boot counting happens on its ESP) and holds a lock on it meanwhile, so no "
        "install or upgrade can start on it. Exit status 1 when no Engine booted.",
    )
    boot.add_argument("disk", type=Path, help="the disk image to boot")
    boot.add_argument("--json", action="store_true", help="print JSON instead of text")
    boot.add_argument(
        "--timeout",
        type=positive_seconds,
        default=DEFAULT_BOOT_TIMEOUT,
        help=f"seconds to wait for each boot (default {DEFAULT_BOOT_TIMEOUT:.0f})",
    )
    boot.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    boot.set_defaults(handler=cmd_boot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return run_main(parser, lambda args: int(args.handler(args)), argv)


if __name__ == "__main__":
    raise SystemExit(main())
