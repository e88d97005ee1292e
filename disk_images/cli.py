"""`engine-disk create` and `engine-disk inspect`: the disk_images side of the engine-disk CLI.

`installer.disk_cli` owns the `engine-disk` program and calls `add_disk_commands(subparsers)`;
it gets the sub-parsers back so it can add options (`create --engine VERSION`) and wrap the
handlers. `main()` runs these two commands alone, for tests and debugging.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from disk_images.image import create_image
from disk_images.probe import Installation, NoInstallation, ProbeResult, probe
from enginekit.cli import ArgumentParser, add_common_options, run_main
from enginekit.sizes import human_size, parse_size

DEFAULT_SIZE = "8G"


def add_disk_commands(
    subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
) -> dict[str, argparse.ArgumentParser]:
    """Add `create` and `inspect`; returns {"create": parser, "inspect": parser}.

    Each parser has `handler` set (`args.handler(args) -> exit status`); callers may replace it
    (e.g. to run an installation after `cmd_create` made the blank disk).
    """
    create = subparsers.add_parser(
        "create",
        help="create a blank (unpartitioned, sparse) disk image",
        description="Create a blank, sparse raw disk image that stands in for a hard disk.",
    )
    create.add_argument("disk", type=Path, help="the image file to create")
    create.add_argument(
        "--size",
        default=DEFAULT_SIZE,
        help=f"size, e.g. 8G, 512M or bytes (default {DEFAULT_SIZE})",
    )
    create.add_argument(
        "--force",
        action="store_true",
        help="replace an existing regular file (never one in use by a loop device, "
        "a boot, an install or QEMU, never through a symlink); the new image is built "
        "beside it and renamed over it only when complete",
    )
    _add_debug(create)
    create.set_defaults(handler=cmd_create)

    inspect = subparsers.add_parser(
        "inspect",
        help="show partitions and the Engine installation on a disk image (read-only)",
        description="Show a disk image's partitions and the Engine installation on it, "
        "or why there is none. Never writes to the image and needs no root.",
    )
    inspect.add_argument("disk", type=Path, help="the disk image to inspect")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_debug(inspect)
    inspect.set_defaults(handler=cmd_inspect)
    return {"create": create, "inspect": inspect}


def _add_debug(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: a sub-command's default must not reset a --debug given before the command
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log every command run and show tracebacks",
    )


def cmd_create(args: argparse.Namespace) -> int:
    size = parse_size(args.size)
    path = create_image(args.disk, size, force=args.force)
    print(f"created {path}: {human_size(size)} blank sparse disk image")
    return 0


def result_json(path: Path, result: ProbeResult) -> dict[str, Any]:
    """The `inspect --json` document for `result`."""
    doc: dict[str, Any] = {
        "disk": str(path),
        "disk_id": result.disk_id,
        "partitions": [p.as_json() for p in result.partitions],
        "in_use_by": list(result.in_use_by),
    }
    if isinstance(result, Installation):
        doc["engine"] = {
            "version": result.version,
            "layout": result.layout.value,
            "active_slot": result.active_slot.value if result.active_slot else None,
            "upgrade_status": result.upgrade_status.value,
            "upgrade_status_label": result.upgrade_status.label,
            "registered": result.registered,
            "disk_id": result.disk_id,
            "keyboard": result.keyboard,
            "slots": {slot.value: version for slot, version in result.slots.items()},
            "install_complete": result.install_complete,
            "boot_entries": [e.file_name for e in result.boot_entries],
        }
        doc["vms"] = [vm.as_json() for vm in result.vms]
        doc["problems"] = list(result.problems)
    else:
        doc["engine"] = None
        doc["vms"] = []
        doc["reason"] = result.reason
        doc["reason_kind"] = result.kind.value
    return doc


def result_text(path: Path, result: ProbeResult) -> str:
    """`inspect` for people."""
    lines = [f"disk: {path} ({human_size(path.stat().st_size)})"]
    if result.disk_id:
        lines.append(f"disk id: {result.disk_id}")
    if result.in_use_by:
        lines.append(f"in use by: {', '.join(result.in_use_by)} (shown as the file is now)")
    if result.partitions:
        lines.append("partitions:")
        for part in result.partitions:
            name = part.name or ""
            flag = " boot" if part.bootable else ""
            lines.append(
                f"  {part.number}  start {human_size(part.start):>10}  size "
                f"{human_size(part.size):>10}  {name:<16} {part.type}{flag}"
            )
    if isinstance(result, NoInstallation):
        lines.append(f"no Engine installation ({result.reason})")
        return "\n".join(lines)
    slots = ", ".join(f"{s.value}: {v or 'empty'}" for s, v in result.slots.items())
    active = f"active slot {result.active_slot.value}" if result.active_slot else "one system slot"
    lines.append(f"Engine {result.version} ({result.layout.value}), {active} ({slots})")
    lines.append(f"upgrade status: {result.upgrade_status.label}")
    lines.append(f"registered with Synchronizer: {'yes' if result.registered else 'no'}")
    lines.append(f"keyboard: {result.keyboard or 'not set'}")
    if not result.install_complete:
        lines.append("install complete: no (first boot has not finished)")
    if result.boot_entries:
        lines.append("boot entries: " + ", ".join(e.file_name for e in result.boot_entries))
    lines.append(f"VMs: {len(result.vms)}")
    for vm in result.vms:
        lines.append(
            f"  {vm.name:<20} {vm.kind:<7} PV drivers {vm.pv_drivers:<8} "
            f"published for {vm.published_for:<8} {human_size(vm.size_bytes)}"
        )
    for problem in result.problems:
        lines.append(f"warning: {problem}")
    return "\n".join(lines)


def cmd_inspect(args: argparse.Namespace) -> int:
    result = probe(args.disk)
    if args.json:
        json.dump(result_json(args.disk, result), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(result_text(args.disk, result))
    return 0


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="engine-disk", description="Engine disk images.")
    add_common_options(parser)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_disk_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return run_main(parser, lambda args: int(args.handler(args)), argv)


if __name__ == "__main__":
    raise SystemExit(main())
