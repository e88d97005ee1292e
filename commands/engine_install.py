"""`engine-install`: install or upgrade Engine on a disk, interactively or from an answer file.

`--media ISO --target DISK` runs the screens in the terminal; `--answers FILE` runs them from
an answer file checked whole before the first screen; `--validate FILE` only checks a file
(the schema alone, plus this run's needs when --media and --target are given); `--dry-run`
prints the plan and writes nothing; `--record-answers OUT` saves an answer file that replays
the run. Refusals (a downgrade, 4.0.0 straight to 5.0.0...) are one line; the disk is unchanged.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from disk_images.state import UpgradeStatus
from enginekit.cli import ArgumentParser, add_common_options, run_main
from enginekit.errors import EngineKitError, Interrupted, UserInputError
from installer import answers as answer_files
from installer import screens
from installer.frontends.api import Installer, load_medium, load_target
from installer.frontends.unattended import drive
from installer.model import FinishAnswer, InstallerModel, MediumInfo, Screen, TargetInfo
from installer.plan import InstallMode, InstallPlan, InstallReport, ProgressCallback

EXAMPLE = """\
answer file example (sections are named after the screens):
  [eula]
  accept = true
  [keyboard]
  layout = "us"
  [existing]                 # when the target is not blank (Engine or other data)
  action = "upgrade"         # or "repair", or "erase" (the only one on a non-Engine disk) with:
  # confirm_erase = "<the disk id engine-disk inspect shows>"
  [registration]             # needed for a fresh install or erase
  mode = "standalone"        # or "synchronizer" with server = "..." and token = "..."
  [finish]
  reboot = false
"""


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="engine-install",
        description="Install or upgrade Engine on a disk image file.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--media", type=Path, metavar="ISO", help="the Engine installer medium")
    parser.add_argument(
        "--target",
        type=Path,
        metavar="DISK",
        help="the disk image file to install on (block devices are not supported)",
    )
    parser.add_argument(
        "--answers", type=Path, metavar="FILE", help="run unattended from this answer file"
    )
    parser.add_argument(
        "--validate",
        type=Path,
        metavar="FILE",
        help="only check an answer file (exit 0 valid, 2 not); with --media and --target "
        "also check it against them",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan; write nothing to the target"
    )
    parser.add_argument(
        "--record-answers",
        type=Path,
        metavar="OUT",
        help="save an answer file that replays this run (the token is never saved)",
    )
    add_common_options(parser)
    return parser


def plan_text(plan: InstallPlan, disk_keyboard: str | None = None) -> str:
    """The plan, one `key: value` line each; the token shows as *** (it is a Secret).
    `disk_keyboard` names the layout an upgrade keeps (the plan says only "keep")."""
    keyboard = plan.keyboard or (
        f"{disk_keyboard} (kept from the disk)" if disk_keyboard else "keep what the disk has"
    )
    registration = "keep what the disk has"
    if plan.registration is not None:
        registration = plan.registration.mode.value
        if plan.registration.server:
            registration += f" (server {plan.registration.server}, token ***)"
    lines = [
        f"medium: {plan.medium}",
        f"target: {plan.target}",
        f"mode: {plan.mode.value}",
        f"target version: {plan.target_version}",
        f"installed version: {plan.source_version or '-'}",
        f"keyboard: {keyboard}",
        f"registration: {registration}",
        f"reboot: {'yes' if plan.reboot else 'no'}",
    ]
    return "\n".join(lines)


def _validate(args: argparse.Namespace) -> int:
    answers = answer_files.load_answers(args.validate)
    if args.media is None and args.target is None:
        print(f"{args.validate}: valid (schema only; add --media and --target to check the run)")
        return 0
    if args.media is None or args.target is None:
        raise UserInputError(
            "--validate checks a run only with both --media and --target",
            hint="give both, or neither to check the schema alone",
        )
    model = InstallerModel(load_medium(args.media), load_target(args.target))
    answer_files.check_for_run(answers, model, decline_is_problem=True)
    print(f"{args.validate}: valid for {args.media} on {args.target}")
    return 0


def check_record_path(path: Path, answers: Path | None = None) -> None:
    """Refuse an --record-answers path we could not write, before the first screen: a run
    must not end in an error after the engine has changed the disk. An existing file is
    never overwritten (not even with --dry-run): it may be the user's own answer file, whose
    token the recording would replace by a comment."""
    if answers is not None and _same_file(path, answers):
        raise UserInputError(
            f"{path}: is the --answers file; --record-answers never overwrites it",
            hint="record to a new file, e.g. --record-answers recorded.toml",
        )
    if path.is_dir():
        raise UserInputError(
            f"{path}: is a directory; --record-answers needs a file name",
            hint="e.g. --record-answers answers.toml",
        )
    if path.exists() and not path.is_file():
        raise UserInputError(f"{path}: not a regular file; --record-answers needs a file name")
    if path.exists() or path.is_symlink():
        raise UserInputError(
            f"{path}: already exists; --record-answers never overwrites a file",
            hint="record to a new file name, or remove the old one first",
        )
    parent = path.parent
    if not parent.is_dir():
        raise UserInputError(
            f"{path}: no such directory {parent} for the recorded answers",
            hint="create the directory first, or record elsewhere",
        )
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserInputError(f"{path}: not writable; cannot record the answers there")


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (resolved, then by device and inode)."""
    try:
        return a.resolve() == b.resolve() or os.path.samefile(a, b)
    except OSError:
        return False


def _write_recorded(path: Path, model: InstallerModel) -> None:
    try:
        path.write_text(answer_files.record(model), encoding="utf-8")
    except OSError as exc:
        raise UserInputError(
            f"{path}: cannot write the recorded answers ({exc.strerror}); the install itself "
            "is done"
        ) from None


def _text_progress() -> ProgressCallback:
    last: list[str] = []

    def progress(step: str, fraction: float) -> None:
        if not last or last[-1] != step:
            last.append(step)
            print(f"[{fraction * 100:3.0f}%] {step}", flush=True)

    return progress


def _print_report(report: InstallReport) -> None:
    for line in screens.report_lines(report):
        print(line)


def _run(args: argparse.Namespace) -> int:
    if args.answers is not None and args.validate is not None:
        raise UserInputError("--answers and --validate do not go together")
    if args.validate is not None:
        return _validate(args)
    if args.media is None or args.target is None:
        raise UserInputError(
            "engine-install needs --media ISO and --target DISK",
            hint="see 'engine-install --help'",
        )
    # The record path and the answer file are checked before anything else is opened or shown.
    record_to: Path | None = args.record_answers
    if record_to is not None:
        check_record_path(record_to, args.answers)
    answers = answer_files.load_answers(args.answers) if args.answers is not None else None
    medium: MediumInfo = load_medium(args.media)
    target: TargetInfo = load_target(args.target)
    installer = Installer(medium, target, dry_run=args.dry_run)
    try:
        return _drive(args, installer, answers, record_to)
    except KeyboardInterrupt:
        raise _interrupted(args, installer) from None


_MODE_WORDS = {InstallMode.UPGRADE: "upgrade", InstallMode.REPAIR: "repair"}


def _interrupted(args: argparse.Namespace, installer: Installer) -> Interrupted:
    """What a Ctrl-C left on the target, from a fresh read-only probe once the engine ran."""
    finished = installer.report is not None
    if args.dry_run:
        return Interrupted("interrupted; a dry run writes nothing to the target")
    if not finished and installer.screen is not Screen.PROGRESS:
        return Interrupted(
            "interrupted before anything was written to the target",
            hint="run engine-install again when you are ready",
        )
    what = _MODE_WORDS.get(installer.model.mode, "install")
    try:
        now = load_target(args.target)
    except (KeyboardInterrupt, EngineKitError) as exc:
        return Interrupted(
            f"interrupted {'after' if finished else 'during'} the {what}; the disk could not be "
            f"checked afterwards ({getattr(exc, 'message', 'interrupted again')})",
            hint=f"see what was left with: engine-disk inspect {args.target}",
        )
    found = now.installation
    installed = found is not None and (
        found.upgrade_status is UpgradeStatus.INSTALLED_REBOOT_REQUIRED
        or (found.version == installer.model.medium.version and found.install_complete)
    )
    if found is not None and (finished or installed):
        status = found.upgrade_status.value or "ready"
        return Interrupted(
            f"interrupted after the {what} finished: Engine {installer.model.medium.version} "
            f"is installed ({status})",
            hint=f"engine-disk boot {args.target} to complete the first boot",
        )
    if found is not None:
        slot = f" (slot {found.active_slot})" if found.active_slot else ""
        return Interrupted(
            f"interrupted during the {what}: the disk still boots Engine {found.version}{slot}, "
            f"status {found.upgrade_status.label}",
            hint=f"run the same {what} again to complete it",
        )
    before = installer.model.target
    if before.installation is None and not before.holds_data and not now.holds_data:
        # Blank before and blank now (the medium was still being verified, say): the engine
        # never wrote; nothing needs erasing.
        return Interrupted(
            f"interrupted during the {what}, before anything was written: the disk is still blank",
            hint="run engine-install again when you are ready",
        )
    return Interrupted(
        f"interrupted during the {what}: the disk holds no complete Engine installation",
        hint="run the install again; the disk must now be erased (engine-install offers it)",
    )


def _drive(
    args: argparse.Namespace,
    installer: Installer,
    answers: answer_files.AnswerFile | None,
    record_to: Path | None,
) -> int:
    if record_to is not None:
        # Written when the progress step ends (then again with the finish answer).
        installer.on_installed = lambda model: _write_recorded(record_to, model)
    if answers is not None:
        progress = _text_progress()
        report = drive(installer, answers, progress)
        if report is None:
            raise UserInputError(
                f"{args.answers}: eula.accept is false: the licence was not accepted; "
                "nothing was written",
                hint="set [eula] accept = true to install",
            )
    else:
        if not sys.stdin.isatty():
            raise UserInputError(
                "the interactive installer needs a terminal",
                hint="run it in a terminal, or give an answer file with --answers FILE",
            )
        from installer.frontends.interactive import run_interactive

        report = run_interactive(installer)
        if report is None:
            # Quit or a declined licence: the screen said nothing was written. Exit 2 like a
            # declined licence in an answer file (1 is reserved for a failed check).
            return 2
    if args.dry_run:
        print("dry run: this is the plan; nothing was written to the target")
        found = installer.model.target.installation
        print(plan_text(report.plan, found.keyboard if found else None))
        for line in screens.plan_lines(installer.model):
            print(f"  {line}")
    elif answers is not None:
        # The interactive finish screen has shown the report already; once is enough.
        _print_report(report)
    finish = installer.model.answer(Screen.FINISH)
    if isinstance(finish, FinishAnswer) and finish.reboot:
        print(f"reboot: boot the disk to run the new Engine (engine-disk boot {args.target})")
    if record_to is not None and installer.screen is Screen.DONE:
        _write_recorded(record_to, installer.model)
        print(f"answers recorded in {record_to} (the token is never recorded)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
