"""engine-live: what the live installer medium runs once its init has loaded the drivers.

For now it reports what is on each of the machine's fixed disks, one `ENGINE DISK` line per
disk, read with `disk_images.probe` (read-only, never mounted). Removable media (the DVD the
machine booted from, a USB stick) and virtual devices (loop, ram, zram) are not disks to
install on and are left out.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from disk_images.probe import Installation, probe
from enginekit.cli import ArgumentParser, add_common_options, run_main
from enginekit.errors import EngineKitError

SYS_BLOCK = Path("/sys/block")
DISK_LINE = "ENGINE DISK {device} {what}"


def fixed_disks(sys_block: Path = SYS_BLOCK) -> tuple[str, ...]:
    """Names of the block devices backed by hardware (a `device` link) that are not removable."""
    names = []
    for entry in sorted(sys_block.iterdir()) if sys_block.is_dir() else ():
        removable = entry / "removable"
        if not (entry / "device").exists() or not removable.is_file():
            continue
        if removable.read_text().strip() == "0":
            names.append(entry.name)
    return tuple(names)


def disk_line(device: Path) -> str:
    """The report line for one disk: its Engine version, or why there is none."""
    try:
        result = probe(device)
    except EngineKitError as exc:
        return DISK_LINE.format(device=device, what=f"unreadable reason={exc.message!r}")
    if isinstance(result, Installation):
        return DISK_LINE.format(device=device, what=f"version={result.version}")
    return DISK_LINE.format(device=device, what=f"none kind={result.kind}")


def _report(args: argparse.Namespace) -> int:
    dev = Path(args.dev)
    for name in fixed_disks(Path(args.sys_block)):
        print(disk_line(dev / name), flush=True)
    return 0


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="engine-live", description="report what is on each of this machine's fixed disks"
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), _report, argv)


if __name__ == "__main__":
    raise SystemExit(main())
