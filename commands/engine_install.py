"""`engine-install`: install or upgrade Engine on a disk, interactively or from an answer file.

`--media ISO --target DISK` runs the screens in the terminal; `--answers FILE` runs them from
an answer file checked whole before the first screen; `--validate FILE` only checks a file
(the schema alone, plus this run's needs when --media and --target are given); `--dry-run`
prints the plan and writes nothing; `--record-answers OUT` saves an answer file that replays
the run. Refusals (a downgrade, 4.0.0 straight to 5.0.0...) are one line; the disk is unchanged.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from disk_images.state import UpgradeStatus
from enginekit.cli import (
    ArgumentParser,
    add_common_options,
    add_json_option,
    print_json,
    print_wrapped,
    run_main,
)
from enginekit.errors import EngineKitError, Interrupted, UserInputError
from enginekit.outputs import NewOutput, check_new_output, write_new_file
from installer import answers as answer_files
from installer import screens
from installer.engine.refusals import refuse_medium_as_target
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
        "--dry-run",
        action="store_true",
        help="print the plan; write nothing to the target (with --record-answers the answer "
        "file is still saved: a way to make one without installing)",
    )
    parser.add_argument(
        "--record-answers",
        type=Path,
        metavar="OUT",
        help="save an answer file that replays this run; the token is never saved",
    )
    add_json_option(
        parser,
        "the result: mode, versions, slot, upgrade status, VM notes; with --validate, "
        "what was checked",
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
        if args.json:
            print_json({"answers": str(args.validate), "valid": True, "checked": "schema"})
            return 0
        print(f"{args.validate}: valid (schema only; add --media and --target to check the run)")
        return 0
    if args.media is None or args.target is None:
        raise UserInputError(
            "--validate checks a run only with both --media and --target",
            hint="give both, or neither to check the schema alone",
        )
    refuse_medium_as_target(args.target, args.media)
    model = InstallerModel(load_medium(args.media), load_target(args.target))
    answer_files.check_for_run(answers, model, decline_is_problem=True)
    if args.json:
        print_json(
            {
                "answers": str(args.validate),
                "valid": True,
                "checked": "run",
                "medium": str(args.media),
                "target": str(args.target),
            }
        )
        return 0
    print(f"{args.validate}: valid for {args.media} on {args.target}")
    return 0


def check_record_path(
    path: Path, answers: Path | None = None, inputs: tuple[Path | None, ...] = ()
) -> NewOutput:
    """Refuse an --record-answers path we could not write, before the first screen: a run
    must not end in an error after the engine has changed the disk. The shared output rule
    (`enginekit.outputs`), without --force: an existing file is never overwritten (not even
    with --dry-run), above all not the --answers file, whose token the recording would
    replace by a comment."""
    named = [("the --answers file", answers), *(("an input of this run", p) for p in inputs)]
    return check_new_output(
        path,
        inputs=named,
        exists_problem="already exists; --record-answers never overwrites a file",
        exists_hint="record to a new file name, or remove the old one first",
    )


class _Recording:
    """Where the answers go: written when the install step ends, then again with the
    finish answer (replacing only the file this run published)."""

    def __init__(self, output: NewOutput) -> None:
        self.output = output

    def write(self, model: InstallerModel) -> None:
        data = answer_files.record(model).encode("utf-8")
        try:
            self.output = write_new_file(self.output, data, "the recorded answers")
        except OSError as exc:
            raise UserInputError(
                f"{self.output.path}: cannot write the recorded answers: {exc.strerror}; "
                "the install itself is done",
                hint="the recorded answers were not saved; write the answer file by hand, "
                "see 'engine-install --help'",
            ) from None


def text_progress(stream: TextIO) -> ProgressCallback:
    last: list[str] = []

    def progress(step: str, fraction: float) -> None:
        if not last or last[-1] != step:
            last.append(step)
            print(f"[{fraction * 100:3.0f}%] {step}", file=stream, flush=True)

    return progress


def print_report(report: InstallReport) -> None:
    for line in screens.report_lines(report):
        print_wrapped(line)


def _run(args: argparse.Namespace) -> int:
    if args.answers is not None and args.validate is not None:
        raise UserInputError(
            "--answers and --validate do not go together",
            hint="use --answers to install, or --validate to check the file only",
        )
    if args.validate is not None:
        return _validate(args)
    if args.media is None or args.target is None:
        raise UserInputError(
            "engine-install needs --media ISO and --target DISK",
            hint="see 'engine-install --help'",
        )
    # Before the target is opened: probing the ISO as a disk would offer to erase it.
    refuse_medium_as_target(args.target, args.media)
    if args.json and args.answers is None:
        raise UserInputError(
            "--json needs --answers FILE: the interactive screens use the terminal",
            hint="give an answer file with --answers FILE, or leave out --json",
        )
    # The record path and the answer file are checked before anything else is opened or shown.
    record_to: _Recording | None = None
    if args.record_answers is not None:
        record_to = _Recording(
            check_record_path(args.record_answers, args.answers, (args.media, args.target))
        )
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
        return Interrupted(
            "interrupted; a dry run writes nothing to the target",
            hint="run the command again without --dry-run to install",
        )
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
    record_to: _Recording | None,
) -> int:
    if record_to is not None:
        # Written when the progress step ends (then again with the finish answer).
        installer.on_installed = record_to.write
    reboot = False  # "Reboot now" chosen: on the host, say how to boot the disk
    if answers is not None:
        # With --json, stdout carries the one JSON object: the step lines go to stderr.
        progress = text_progress(sys.stderr if args.json else sys.stdout)
        report = drive(installer, answers, progress)
        if report is None:
            raise UserInputError(
                f"{args.answers}: eula.accept is false: the licence was declined; "
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

        result = run_interactive(installer)
        if result.report is None:
            # Quit or a declined licence: the screen said nothing was written. Exit 2 like a
            # declined licence in an answer file (1 is reserved for a failed check).
            return 2
        report = result.report
        reboot = result.reboot
    if args.json:
        return _print_report_json(args, installer, report, record_to)
    if args.dry_run:
        print("dry run: this is the plan; nothing was written to the target")
        found = installer.model.target.installation
        print(plan_text(report.plan, found.keyboard if found else None))
        for line in screens.plan_lines(installer.model):
            print_wrapped(f"  {line}")
    elif answers is not None:
        # The interactive finish screen has shown the report already; once is enough.
        print_report(report)
    finish = installer.model.answer(Screen.FINISH)
    if reboot or (answers is not None and isinstance(finish, FinishAnswer) and finish.reboot):
        print(f"reboot: boot the disk to run the new Engine (engine-disk boot {args.target})")
    if record_to is not None and installer.screen is Screen.DONE:
        record_to.write(installer.model)
        what = "the dry run's answers" if args.dry_run else "answers"
        print(f"{what} recorded in {record_to.output.path} (the token is never recorded)")
    return 0


def _print_report_json(
    args: argparse.Namespace,
    installer: Installer,
    report: InstallReport,
    record_to: _Recording | None,
) -> int:
    """`--json`: the run's result; the token is never in it."""
    plan = report.plan
    if record_to is not None and installer.screen is Screen.DONE:
        record_to.write(installer.model)
    finish = installer.model.answer(Screen.FINISH)
    print_json(
        {
            "medium": str(plan.medium),
            "target": str(plan.target),
            "dry_run": bool(args.dry_run),
            "mode": plan.mode.value,
            "target_version": plan.target_version,
            "source_version": plan.source_version,
            "installed_version": None if args.dry_run else report.installed_version,
            "slot": None if args.dry_run else report.slot,
            "upgrade_status": None if args.dry_run else report.upgrade_status,
            "keyboard": plan.keyboard,
            "registration": plan.registration.mode.value if plan.registration else None,
            "vm_notes": [
                {"name": n.name, "kind": n.kind, "message": n.message} for n in report.vm_notes
            ],
            "steps_done": list(report.steps_done),
            "reboot": isinstance(finish, FinishAnswer) and finish.reboot,
            "answers_recorded": str(record_to.output.path) if record_to is not None else None,
        }
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
