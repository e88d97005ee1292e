"""engine-live-check: the boot menu's "Check this medium, then install Engine" entry.

The live init runs it before the installer when the kernel command line names the check
entry (`media.boot_menu`). It finds the raw block device the machine booted from (the DVD or
the stick, `media.medium_device`) and checks the embedded isomd5sum checksum over it
(`media.isomd5`, the same check as `checkisomd5`). It prints one line: `ENGINE MEDIUM CHECK
PASSED ...` (exit 0: the init goes on to install) or `ENGINE MEDIUM CHECK FAILED ...` (exit 1:
the init stops, nothing is installed from a damaged medium).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from enginekit.cli import ArgumentParser, add_common_options, run_main
from enginekit.errors import EngineKitError
from enginekit.versions import EngineVersion
from media import isomd5
from media.iso_builder import volume_id_for
from media.medium_device import SYS_BLOCK, find_medium

CHECKING_LINE = "ENGINE MEDIUM CHECK device={device} volume={volume}"
PASSED_LINE = "ENGINE MEDIUM CHECK PASSED device={device} md5={md5}"
FAILED_LINE = "ENGINE MEDIUM CHECK FAILED{where} reason={reason!r}"


def check_medium(version: str, sys_block: Path = SYS_BLOCK, dev: Path = Path("/dev")) -> bool:
    """Find this version's medium, check its embedded MD5, print the outcome; True if good."""
    volume_id = volume_id_for(str(EngineVersion.parse(version)))
    where = ""
    try:
        medium = find_medium(volume_id, sys_block, dev)
        where = f" device={medium.path}"
        print(CHECKING_LINE.format(device=medium.path, volume=medium.volume_id), flush=True)
        result = isomd5.check(medium.path)
    except EngineKitError as exc:
        print(FAILED_LINE.format(where=where, reason=exc.message), flush=True)
        return False
    if result.passed:
        print(PASSED_LINE.format(device=medium.path, md5=result.expected), flush=True)
        return True
    print(FAILED_LINE.format(where=where, reason=isomd5.describe(result)), flush=True)
    return False


def _check(args: argparse.Namespace) -> int:
    return 0 if check_medium(args.version, Path(args.sys_block), Path(args.dev)) else 1


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="engine-live-check",
        description="check the embedded MD5 of the installer medium this machine booted from",
    )
    add_common_options(parser)
    parser.add_argument("--version", required=True, help="the Engine version of the medium")
    parser.add_argument("--sys-block", default=str(SYS_BLOCK), help=argparse.SUPPRESS)
    parser.add_argument("--dev", default="/dev", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), _check, argv)


if __name__ == "__main__":
    raise SystemExit(main())
