"""`engine-media`: build, inspect, checksum and verify Engine installer ISOs (and, through
`commands.engine_media_usb`, write them to USB sticks).

Each sub-command is a thin call into the media package. Human output is short and readable;
`--json` output is stable (documented keys only). Exit status: 0 when everything holds, 1 when
a check fails, 2 for bad input (see enginekit.errors), 3 when the host lacks something.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from media.iso_builder import BuildResult

from enginekit.cli import (
    ArgumentParser,
    add_debug_option,
    add_json_option,
    positive_seconds,
    print_json,
    run_main,
)
from enginekit.errors import UserInputError
from enginekit.scratch import scratch_tree
from enginekit.sizes import UNITS_HELP, human_size, parse_size
from enginekit.text import one_line
from media.errors import VerificationFailed
from reference_builds.builds import REFERENCE_BUILDS, reference_build

Handler = Callable[[argparse.Namespace], int]


@cache
def _console(stderr: bool = False) -> Console:
    # rich is imported on first use: `md5 check` and `--json` runs start faster without it.
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


@contextmanager
def _progress_bar(description: str) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on a terminal, nothing when output is redirected."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=_console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


# -- build ------------------------------------------------------------------------------------


def _cmd_build(args: argparse.Namespace) -> int:
    from media.iso_builder import HybridIsoBuilder, check_output

    out = Path(args.output)
    if args.reference:
        reference_build(args.reference)  # an unknown version before any other check
    answers = _answers_file(args.answers) if args.answers else None
    # Before the (slow) reference payload is made; the build checks again.
    check_output(out, force=args.force, payload=Path(args.payload) if args.payload else None)
    with scratch_tree("payload") as tmp:
        payload = Path(tmp) / "payload"
        if args.reference:
            from reference_builds.payload import write_reference_payload

            write_reference_payload(args.reference, payload)
        elif answers is not None:
            from media.remaster import copy_payload

            copy_payload(Path(args.payload), payload)  # the user's tree is never written
        else:
            payload = Path(args.payload)
        if answers is not None:
            _bake(payload, answers)
        with _progress_bar(f"building {out.name}") as progress:
            result = HybridIsoBuilder(payload, progress=progress).build(out, force=args.force)
    return _report_build(args, result, answers)


def _cmd_remaster(args: argparse.Namespace) -> int:
    from media.iso_builder import HybridIsoBuilder, check_output
    from media.remaster import extract_payload

    source, out = Path(args.iso), Path(args.output)
    _require_file(source)
    answers = _answers_file(args.answers)
    check_output(out, force=args.force, medium=source)
    with scratch_tree("payload") as tmp:
        payload = Path(tmp) / "payload"
        extract_payload(source, payload)
        _bake(payload, answers)
        with _progress_bar(f"building {out.name}") as progress:
            result = HybridIsoBuilder(payload, progress=progress).build(out, force=args.force)
    return _report_build(args, result, answers)


def _answers_file(path_text: str) -> tuple[Path, bytes]:
    """The answer file to bake, checked against the schema first (the medium's own checks
    follow in `_bake`): a bad file is one error line and no medium."""
    from installer.answers import load_answers

    path = Path(path_text)
    load_answers(path)
    return path, path.read_bytes()


def _bake(payload: Path, answers: tuple[Path, bytes]) -> None:
    from installer.answers import check_for_medium, parse_answers
    from media.payload_tree import load_tree_manifest
    from media.remaster import put_answers

    path, data = answers
    manifest = load_tree_manifest(payload)
    for warning in check_for_medium(parse_answers(data, str(path)), manifest.keyboards):
        print(f"warning: {warning}", file=sys.stderr)
    put_answers(payload, data)


def _report_build(
    args: argparse.Namespace, result: BuildResult, answers: tuple[Path, bytes] | None
) -> int:
    baked = str(answers[0]) if answers is not None else None
    if args.json:
        print_json(
            {
                "iso": str(result.path),
                "version": result.version,
                "volume_id": result.volume_id,
                "size_bytes": result.size_bytes,
                "seconds": round(result.seconds, 1),
                "answers": baked,
            }
        )
        return 0
    with_answers = f", unattended (answers from {baked})" if baked else ""
    _console().print(
        f"built {result.path}: Engine {result.version}, volume {result.volume_id}, "
        f"{human_size(result.size_bytes)} in {result.seconds:.1f} s{with_answers}",
        markup=False,
    )
    return 0


# -- inspect ----------------------------------------------------------------------------------


def _yes(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _cmd_inspect(args: argparse.Namespace) -> int:
    from media.inspect import inspect_iso

    usb = _usb_size(args.usb_size) if args.usb_size else None
    report = inspect_iso(Path(args.iso), usb)
    if args.json:
        print_json(report.to_dict())
        return 0
    rows = [
        ("version", report.version or "(no manifest)"),
        ("volume id", report.volume_id),
        ("size", f"{human_size(report.size_bytes)} ({report.size_bytes} bytes)"),
    ]
    for entry in report.boot:
        rows.append(
            (
                "boot",
                f"{entry.platform}: {entry.path or f'LBA {entry.lba}'} "
                f"(no emulation, {entry.load_sectors} sectors)"
                if entry.emulation == "none"
                else f"{entry.platform}: {entry.emulation} emulation",
            )
        )
    if not report.boot:
        rows.append(("boot", "not bootable (no El Torito catalog)"))
    gpt = "absent"
    if report.gpt:
        gpt = "valid" if report.gpt_valid else "INVALID: " + "; ".join(report.gpt_problems)
    rows.append(("hybrid", f"MBR {_yes(report.mbr)}, GPT {gpt}"))
    rows.append(("embedded md5", report.md5))
    fits = ", ".join(f"{name} {_yes(ok)}" for name, ok in report.fits.items() if ok is not None)
    rows.append(("fits on", fits))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        _console().print(f"{key:<{width}}  {value}", markup=False)
    return 0


def _usb_size(text: str) -> int:
    """A stick's size, with a unit (the one rule of `enginekit.sizes`): 650MB is
    650,000,000 bytes, 16G is 16 GiB; a bare number is refused."""
    return parse_size(text, "--usb-size")


# -- md5 --------------------------------------------------------------------------------------


def _cmd_md5_implant(args: argparse.Namespace) -> int:
    from media.isomd5 import implant

    path = Path(args.iso)
    _require_file(path)
    with _progress_bar("implanting MD5") as progress:
        md5 = implant(path, force=args.force, progress=progress)
    if args.json:
        print_json({"iso": str(path), "md5": md5, "implanted": True})
        return 0
    _console().print(f"{path}: implanted MD5 {md5}")
    return 0


def _cmd_md5_check(args: argparse.Namespace) -> int:
    from media.isomd5 import Md5Status, check, describe

    path = Path(args.iso)
    _require_file(path)
    with _progress_bar("checking MD5") as progress, _truncated_fails_verification():
        result = check(path, progress=progress)
    found = {
        "iso": str(path),
        "status": str(result.status),
        "expected": result.expected,
        "actual": result.actual,
        "first_bad_fragment": result.first_bad_fragment,
    }
    if result.status is Md5Status.ABSENT:
        raise UserInputError(
            f"{path}: {describe(result)}",
            hint=f"embed one with 'engine-media md5 implant {path}'",
        ).with_result(found)
    if result.status is Md5Status.FAIL:
        raise VerificationFailed(
            f"{path}: {describe(result)}",
            hint="the image was changed or damaged after its checksum was implanted, "
            "by a bad download or copy; fetch or build it again",
        ).with_result(found)
    if args.json:
        print_json(found)
        return 0
    _console().print(f"{path}: PASS: {describe(result)}")
    return 0


@contextmanager
def _truncated_fails_verification() -> Iterator[None]:
    """A cut-short image is a failed check (exit 1) in `verify` and `md5 check`, like any
    other damage they find, rather than bad input (exit 2)."""
    from media.isomd5 import TruncatedISO

    try:
        yield
    except TruncatedISO as exc:
        raise VerificationFailed(exc.message, hint=exc.hint) from None


def _require_file(path: Path) -> None:
    if not path.exists():
        raise UserInputError(f"{path}: no such file", hint="check the ISO's path")
    if not path.is_file():
        raise UserInputError(f"{path}: not a regular file", hint="give the path of an ISO image")


# -- verify -----------------------------------------------------------------------------------


def _cmd_verify(args: argparse.Namespace) -> int:
    from media.verify import verify_iso

    path = Path(args.iso)
    progress = None
    if not args.json and sys.stderr.isatty():
        progress = lambda text: _console(stderr=True).print(f"[dim]… {text}[/dim]")  # noqa: E731
    with _truncated_fails_verification():
        report = verify_iso(path, boot=args.boot, timeout=args.timeout, progress=progress)
    if not args.json:
        for check in report.checks:
            mark = "[green]ok  [/green]" if check.ok else "[red]FAIL[/red]"
            _console().print(f"{mark} {check.name:<10} ", end="")
            _console().print(one_line(check.detail), markup=False)
        for boot in report.boots:
            mark = "[green]ok  [/green]" if boot.ok else "[red]FAIL[/red]"
            _console().print(f"{mark} boot {boot.name:<15} {boot.seconds:5.1f} s  ", end="")
            _console().print(one_line(boot.marker or boot.problem or ""), markup=False)
            if not boot.ok and boot.console_tail:
                _console().print(f"       console: {boot.console_tail}", markup=False)
    if not report.ok:
        raise VerificationFailed(
            f"{path}: verification failed: {'; '.join(report.failures())}",
            hint="the image is damaged or was changed since it was built; build or fetch it "
            "again; the failed checks in the report say what does not hold",
        ).with_result(report.to_dict())
    if args.json:
        print_json(report.to_dict())
    else:
        what = "all checks and boots hold" if args.boot else "all checks hold (no boot: --boot)"
        _console().print(f"{path}: Engine {report.version}: {what}", markup=False)
    return 0


# -- parser -----------------------------------------------------------------------------------


def build_parser(with_usb: bool = True) -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="engine-media",
        description="Build, inspect, verify and write Engine installer media.",
    )
    parser.add_argument("--debug", action="store_true", help="log commands, show tracebacks")
    # Required, like `usb`'s: a missing command is one `error:` line and a hint, not usage.
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=ArgumentParser, required=True
    )

    build = sub.add_parser("build", help="build a hybrid installer ISO")
    source = build.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--reference",
        metavar="VERSION",
        help=f"build the reference Engine VERSION: one of {', '.join(REFERENCE_BUILDS)}",
    )
    source.add_argument(
        "--payload", metavar="DIR", help="build from a payload tree with engine/manifest.json"
    )
    build.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT.iso",
        help="the ISO to create; an existing file is refused unless --force",
    )
    build.add_argument(
        "--force",
        action="store_true",
        help="replace an existing regular file (never one in use by a loop device, a lock "
        "or QEMU, never the payload or a file inside it, never through a symlink); the "
        "new ISO is built beside it and renamed over it only when complete",
    )
    build.add_argument(
        "--answers",
        metavar="FILE",
        help="bake this answer file into the medium: the live installer then runs unattended "
        "(the file is checked first, as engine-install --answers would)",
    )
    add_json_option(build, "what was built (path, version, volume id, size, answers)")
    add_debug_option(build)
    build.set_defaults(handler=_cmd_build)

    remaster = sub.add_parser(
        "remaster", help="a copy of an ISO with an answer file baked in (unattended)"
    )
    remaster.add_argument(
        "iso", metavar="IN.iso", help="the installer ISO to start from (only read)"
    )
    remaster.add_argument(
        "--answers",
        required=True,
        metavar="FILE",
        help="the answer file to bake in (replaces one already there); checked first",
    )
    remaster.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT.iso",
        help="the new ISO; never IN.iso; an existing file is refused unless --force",
    )
    remaster.add_argument(
        "--force", action="store_true", help="replace an existing OUT.iso (as build does)"
    )
    add_json_option(remaster, "what was built (path, version, volume id, size, answers)")
    add_debug_option(remaster)
    remaster.set_defaults(handler=_cmd_remaster)

    inspect = sub.add_parser("inspect", help="show what an ISO is and what it fits on")
    inspect.add_argument("iso", metavar="ISO", help="the ISO image to inspect")
    add_json_option(inspect, "the report")
    inspect.add_argument(
        "--usb-size",
        metavar="SIZE",
        help=f"also check a USB stick of this size, with a unit: 16GB, 650MB, 8G ({UNITS_HELP})",
    )
    add_debug_option(inspect)
    inspect.set_defaults(handler=_cmd_inspect)

    md5 = sub.add_parser("md5", help="the isomd5sum checksum embedded in the ISO")
    md5_sub = md5.add_subparsers(
        dest="md5_command", metavar="ACTION", parser_class=ArgumentParser, required=True
    )
    implant = md5_sub.add_parser("implant", help="embed the checksum (like implantisomd5)")
    implant.add_argument("iso", metavar="ISO", help="the ISO image to implant the checksum in")
    implant.add_argument("--force", action="store_true", help="replace an existing checksum")
    add_json_option(implant, "the ISO and the MD5 implanted")
    add_debug_option(implant)
    implant.set_defaults(handler=_cmd_md5_implant)
    check = md5_sub.add_parser("check", help="check the checksum (like checkisomd5)")
    check.add_argument("iso", metavar="ISO", help="the ISO image to check")
    add_json_option(check, "the ISO, the status and the sums compared")
    add_debug_option(check)
    check.set_defaults(handler=_cmd_md5_check)
    add_debug_option(md5)
    md5.set_defaults(handler=None, subparser=md5)

    verify = sub.add_parser("verify", help="check everything; --boot also boots it 4 ways")
    verify.add_argument("iso", metavar="ISO", help="the ISO image to verify")
    verify.add_argument("--boot", action="store_true", help="boot BIOS/UEFI from CD and disk")
    add_json_option(verify, "every check and boot")
    verify.add_argument(
        "--timeout",
        type=positive_seconds,
        # media.verify.BOOT_TIMEOUT, not imported here: it would load QEMU and pycdlib code
        # into every engine-media start.
        default=300.0,
        metavar="SECONDS",
        help="per boot (default 300)",
    )
    add_debug_option(verify)
    verify.set_defaults(handler=_cmd_verify)

    if with_usb:
        from commands.engine_media_usb import add_usb_commands

        add_usb_commands(sub)
    else:
        # Importing the USB stack (pyudev...) costs noticeable start-up time; a run that is
        # not about USB only needs the name listed in --help.
        sub.add_parser("usb", help="find, write and verify USB sticks").set_defaults(handler=None)
    parser.set_defaults(handler=None, subparser=parser)
    return parser


def _wants_usb(argv: Sequence[str]) -> bool:
    positional = [a for a in argv if not a.startswith("-")]
    return not positional or positional[0] == "usb"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(with_usb=_wants_usb(args))

    def dispatch(args: argparse.Namespace) -> int:
        handler: Handler | None = getattr(args, "handler", None)
        if handler is None:
            helper: argparse.ArgumentParser = getattr(args, "subparser", None) or parser
            helper.print_help(sys.stderr)
            return 2
        return handler(args)

    return run_main(parser, dispatch, args)


if __name__ == "__main__":
    raise SystemExit(main())
