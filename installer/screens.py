"""Every installer screen as two pure functions: what it shows, and what an answer means.

`view(model)` returns the text and the choices of the current screen; `handle(model, answer)`
returns an `Outcome` (forward / back / repeat / exit, the answer to keep, a line for the user).
Nothing here does I/O: front ends render views and collect answers, the model moves, and the
engine alone writes. The small validators live below this module and the answer-file checks
(`installer.validators`), so both refuse the same things with the same words.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from disk_images.state import RegistrationMode, UpgradeStatus
from enginekit.errors import InternalError
from enginekit.sizes import human_size
from installer import rules, steps
from installer.model import (
    Answer,
    BootAnswer,
    Direction,
    EulaAnswer,
    ExistingAnswer,
    FinishAnswer,
    InstallerModel,
    KeyboardAnswer,
    Outcome,
    ProgressAnswer,
    RegistrationAnswer,
    Screen,
    SummaryAnswer,
    WelcomeAnswer,
)
from installer.plan import InstallMode, InstallReport, Secret
from installer.validators import existing_problem, layout_problem, registration_problems, short


@dataclass(frozen=True)
class Choice:
    value: str
    label: str


@dataclass(frozen=True)
class Field:
    """A line of text a choice needs (the disk id to confirm an erase, the server, the token)."""

    name: str
    prompt: str
    secret: bool = False
    default: str = ""  # what the user typed before (after Back); never set for a secret


@dataclass(frozen=True)
class View:
    screen: Screen
    title: str
    text: str
    choices: tuple[Choice, ...]
    default: str | None
    can_back: bool
    can_quit: bool
    fields: Mapping[str, tuple[Field, ...]]  # choice value -> the fields it needs
    # The title bar: product, version, the screen's number and name.
    heading: str = ""
    # The text must have been shown to its last line before a choice is taken (the licence).
    read_to_end: bool = False


# ---- views -----------------------------------------------------------------------------------


def _describe_installation(model: InstallerModel) -> str:
    found = model.target.installation
    other = model.target.other_data
    if found is None and other is not None:
        return (
            f"No Engine installation was found, but disk {model.target.disk_id} holds data: "
            f"{other}.\nInstalling Engine on it erases everything on it."
        )
    if found is None:
        return "No Engine installation was found on this disk."
    lines = [
        f"Found Engine {found.version} on disk {model.target.disk_id} "
        f"({found.layout.value}, active slot {found.active_slot or '-'}, "
        f"upgrade status: {found.upgrade_status.label})",
    ]
    for damage in found.damage:
        lines.append(f"Damaged: {damage}")
    for repair in found.repairs:
        lines.append(f"Upgrade or repair first fixes it: {repair}.")
    if found.upgrade_status is UpgradeStatus.INSTALLED_REBOOT_REQUIRED:
        lines.append(
            "An upgrade is installed and waits for a restart; upgrading again rewrites it."
        )
    if not found.install_complete:
        lines.append("The installation did not finish; erase or repair it.")
    if found.registration is not None and found.registration.registered:
        server = found.registration.server
        lines.append(f"Registered with Synchronizer{f' ({server})' if server else ''}")
    else:
        lines.append("Standalone (not registered with Synchronizer)")
    lines.append(f"Keyboard: {found.keyboard or 'not set'}")
    lines.append(f"VMs: {len(found.vms)}")
    for vm in found.vms:
        lines.append(
            f"  {vm.name}: {vm.kind}, PV drivers {vm.pv_drivers}, "
            f"published for {vm.published_for}, {human_size(vm.size_bytes)}"
        )
    for bad in found.unreadable_vms:
        lines.append(f"  {bad} (cannot be read)")
    upgrade_refusal = model.decision.refused.get(InstallMode.UPGRADE)
    if upgrade_refusal and InstallMode.REPAIR not in model.decision.allowed:
        lines.append(f"Upgrade is not possible: {upgrade_refusal}.")
    return "\n".join(lines)


def _existing_choices(model: InstallerModel) -> tuple[Choice, ...]:
    found = model.target.installation
    version = found.version if found else "?"
    labels = {
        InstallMode.UPGRADE: f"Upgrade Engine {version} to {model.medium.version} (keeps VMs)",
        InstallMode.REPAIR: f"Repair Engine {version} (reinstall the system, keep VMs)",
        InstallMode.ERASE: "Delete the installation and its VMs, and reinstall"
        if found
        else f"Erase the disk and install Engine {model.medium.version}",
    }
    return tuple(Choice(mode.value, labels[mode]) for mode in model.decision.allowed)


def _registration_choices(model: InstallerModel) -> tuple[Choice, ...]:
    choices = []
    if model.mode in (InstallMode.UPGRADE, InstallMode.REPAIR):
        found = model.target.installation
        current = "registered with Synchronizer" if found and found.registered else "standalone"
        choices.append(Choice("keep", f"Keep the current registration ({current})"))
    choices.append(Choice("synchronizer", "Register with a Synchronizer server"))
    choices.append(Choice("standalone", "Standalone (not registered)"))
    return tuple(choices)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _new_system_place(model: InstallerModel) -> str:
    """Where an upgrade or repair writes the new system, as the summary says it."""
    found = model.target.installation
    assert found is not None
    if found.active_slot is not None:
        return f"slot {found.active_slot.other}"
    if model.decision.layout_change:
        return "the new slot B (the old system stays in slot A as the fallback)"
    return "the system partition, in place"


def plan_lines(model: InstallerModel) -> list[str]:
    """The summary of what confirming will do, as lines of text."""
    mode = model.mode
    target = model.target
    found = target.installation
    size = human_size(target.size_bytes)
    lines: list[str] = []
    if mode is InstallMode.FRESH:
        lines.append(f"Install Engine {model.medium.version} on {target.path} ({size}).")
        if target.not_found_reason:
            lines.append(f"No Engine installation was found ({target.not_found_reason}).")
        lines.append("Everything on this disk will be overwritten.")
    elif mode is InstallMode.ERASE and found is None:
        lines.append(
            f"Erase disk {target.disk_id} ({target.other_data or 'no Engine installation'}) "
            f"and install Engine {model.medium.version} on {target.path} ({size})."
        )
        lines.append("Everything on this disk will be lost.")
    elif mode is InstallMode.ERASE:
        vms = _count(len(found.vms) if found else 0, "VM")
        lines.append(
            f"Delete Engine {found.version if found else '?'} and its {vms} on disk "
            f"{target.disk_id}, then install Engine {model.medium.version}."
        )
        if found is not None and (found.vms or found.unreadable_vms):
            names = [vm.name for vm in found.vms]
            names += [f"{bad.split(':', 1)[0]} (unreadable)" for bad in found.unreadable_vms]
            lines.append(f"VMs deleted: {', '.join(names)}.")
    else:
        assert found is not None
        verb = "Upgrade" if mode is InstallMode.UPGRADE else "Repair"
        lines.append(
            f"{verb} Engine {found.version} to {model.medium.version}: the new system goes "
            f"into {_new_system_place(model)}; VM disks are not touched."
        )
        if model.decision.layout_change:
            old, new = model.decision.layout_change
            lines.append(f"The disk layout changes from {old.value} to {new.value}.")
        for note in rules.vm_notes(found.vms, model.medium.version, model.medium.pv_drivers):
            lines.append(f"  {note.name}: {note.message}")
    plan_keyboard = model.keyboard
    kept = (
        mode in (InstallMode.UPGRADE, InstallMode.REPAIR)
        and found is not None
        and found.keyboard == plan_keyboard
    )
    lines.append(f"Keyboard: {plan_keyboard}{' (kept from the disk)' if kept else ''}")
    reg = model.answer(Screen.REGISTRATION)
    if isinstance(reg, RegistrationAnswer) and not reg.keep:
        if reg.mode == RegistrationMode.SYNCHRONIZER:
            lines.append(f"Registration: Synchronizer {reg.server}")
        else:
            lines.append("Registration: standalone")
    elif mode in (InstallMode.UPGRADE, InstallMode.REPAIR):
        lines.append("Registration: unchanged")
    else:
        lines.append("Registration: standalone")
    return lines


def report_lines(report: InstallReport) -> list[str]:
    if report.steps_done and report.steps_done[0].startswith("dry run"):
        return [
            f"Dry run: Engine {report.installed_version} would be installed "
            f"({report.plan.mode.value}); nothing was written."
        ] + [f"  {note.name}: {note.message}" for note in report.vm_notes]
    lines = [f"Engine {report.installed_version} installed"]
    if report.slot:
        lines[0] += f" in slot {report.slot}"
    lines[0] += "."
    lines.append(f"Upgrade status: {report.upgrade_status.label}")
    for note in report.vm_notes:
        lines.append(f"  {note.name}: {note.message}")
    return lines


def view(model: InstallerModel) -> View:
    screen = model.screen
    medium = model.medium
    can_back = steps.can_go_back(model, screen) if not screen.terminal else False
    can_quit = screen not in (Screen.PROGRESS, Screen.FINISH) and not screen.terminal
    fields: dict[str, tuple[Field, ...]] = {}
    choices: tuple[Choice, ...]
    default: str | None
    if screen is Screen.BOOT_MENU:
        title = "Boot menu"
        text = f"Engine {medium.version}: install Engine, or upgrade the Engine on this disk."
        choices, default = (Choice("install", "Install Engine"),), "install"
    elif screen is Screen.WELCOME:
        title = "Welcome"
        text = (
            f"Welcome to the Engine {medium.version} installer. It installs Engine on "
            f"{model.target.path}, or upgrades the Engine already there."
        )
        choices, default = (Choice("next", "Next"),), "next"
    elif screen is Screen.EULA:
        title = "End-user licence agreement"
        text = medium.eula_text
        choices = (Choice("accept", "I accept"), Choice("decline", "I do not accept"))
        default = "accept" if model.eula_accepted else None
    elif screen is Screen.KEYBOARD:
        title = "Keyboard layout"
        text = "Choose the keyboard layout."
        choices = tuple(
            Choice(code, f"{code}  {medium.keyboard_names.get(code, '')}".rstrip())
            for code in medium.keyboards
        )
        default = model.keyboard
    elif screen is Screen.EXISTING:
        title = "Existing installation"
        text = (
            "Looking for an Engine installation (this may take a few seconds).\n"
            + _describe_installation(model)
        )
        choices = _existing_choices(model)
        answer = model.answer(Screen.EXISTING)
        default = answer.action.value if isinstance(answer, ExistingAnswer) else choices[0].value
        typed = answer.confirm_erase if isinstance(answer, ExistingAnswer) else None
        fields["erase"] = (
            Field(
                "confirm_erase",
                f"Type the disk id {model.target.disk_id} to confirm",
                default=typed or "",
            ),
        )
    elif screen is Screen.REGISTRATION:
        title = "Synchronizer registration"
        text = "Register this computer with a Synchronizer server, or run it standalone."
        choices = _registration_choices(model)
        default = choices[0].value
        before = model.answer(Screen.REGISTRATION)
        server = ""
        token_prompt = "Registration token"
        if isinstance(before, RegistrationAnswer):
            # Back and forward again: offer what was chosen and typed, not the first choice.
            chosen = "keep" if before.keep else before.mode
            if chosen is not None and chosen in {c.value for c in choices}:
                default = chosen
            server = before.server or ""
            if before.token is not None:
                token_prompt += " (Enter keeps the one typed before)"
        fields["synchronizer"] = (
            Field("server", "Synchronizer server (host, host:port or URL)", default=server),
            Field("token", token_prompt, secret=True),
        )
    elif screen is Screen.SUMMARY:
        title = "Summary"
        text = "\n".join(plan_lines(model))
        # The mode the plan carries out (`to_plan()` takes it from `model.mode` too), so an
        # upgrade is confirmed with "Upgrade now", a fresh install with "Install now".
        choices, default = (Choice("install", model.mode.confirm_label),), "install"
    elif screen is Screen.PROGRESS:
        title = "Installing"
        text = "Installing Engine; do not switch the computer off."
        choices, default = (), None
    elif screen is Screen.FINISH:
        title = "Finished"
        report = model.report
        text = "\n".join(report_lines(report)) if report else ""
        choices = (Choice("reboot", "Reboot now"), Choice("no-reboot", "Do not reboot"))
        default = "reboot"
    else:
        title = screen.value
        text = model.message
        choices, default = (), None
    heading = f"Engine {medium.version} installer"
    if not screen.terminal:
        heading += f" \u2014 {steps.number(screen)}/{len(steps.STEPS)} {title}"
    return View(
        screen,
        title,
        text,
        choices,
        default,
        can_back,
        can_quit,
        fields,
        heading=heading,
        read_to_end=screen is Screen.EULA and not model.eula_accepted,
    )


# ---- answers from choices (for front ends) --------------------------------------------------


def answer_from_choice(model: InstallerModel, value: str, fields: Mapping[str, str]) -> Answer:
    """The typed answer for choice `value` (plus its fields) on the current screen."""
    screen = model.screen
    if screen is Screen.BOOT_MENU:
        return BootAnswer(value)
    if screen is Screen.WELCOME:
        return WelcomeAnswer()
    if screen is Screen.EULA:
        return EulaAnswer(accept=value == "accept")
    if screen is Screen.KEYBOARD:
        return KeyboardAnswer(value)
    if screen is Screen.EXISTING:
        try:
            action = InstallMode(value)
        except ValueError:
            action = InstallMode.FRESH  # handle() refuses it with a clear line
        return ExistingAnswer(action, fields.get("confirm_erase"))
    if screen is Screen.REGISTRATION:
        if value == "keep":
            return RegistrationAnswer(keep=True)
        token = fields.get("token")
        before = model.answer(Screen.REGISTRATION)
        if token == "" and isinstance(before, RegistrationAnswer) and before.token is not None:
            token = before.token.reveal()  # Enter on the token prompt keeps the earlier one
        return RegistrationAnswer(
            mode=value,
            server=fields.get("server") or None,
            token=Secret(token) if token is not None else None,
        )
    if screen is Screen.SUMMARY:
        return SummaryAnswer(confirm=value == "install")
    if screen is Screen.FINISH:
        return FinishAnswer(reboot=value == "reboot")
    raise InternalError(f"screen {screen} takes no choice")


# ---- handling answers --------------------------------------------------------------------------


def _repeat(message: str) -> Outcome:
    return Outcome(Direction.REPEAT, None, message)


def _handle_eula(_model: InstallerModel, answer: Answer) -> Outcome:
    assert isinstance(answer, EulaAnswer)
    if not answer.accept:
        return Outcome(Direction.EXIT, answer, "The licence was not accepted; nothing was written.")
    return Outcome(Direction.FORWARD, answer)


def _handle_keyboard(model: InstallerModel, answer: Answer) -> Outcome:
    assert isinstance(answer, KeyboardAnswer)
    problem = layout_problem(model.medium.keyboards, answer.layout)
    return _repeat(problem) if problem else Outcome(Direction.FORWARD, answer)


def _handle_existing(model: InstallerModel, answer: Answer) -> Outcome:
    assert isinstance(answer, ExistingAnswer)
    problem = existing_problem(model, answer.action, answer.confirm_erase)
    return _repeat(problem) if problem else Outcome(Direction.FORWARD, answer)


def _handle_registration(model: InstallerModel, answer: Answer) -> Outcome:
    assert isinstance(answer, RegistrationAnswer)
    if answer.keep:
        if model.mode not in (InstallMode.UPGRADE, InstallMode.REPAIR):
            return _repeat("there is no registration to keep on a new installation")
        return Outcome(Direction.FORWARD, answer)
    if answer.mode not in tuple(RegistrationMode):
        return _repeat(f"{short(answer.mode)} is not a registration mode")
    token = answer.token.reveal() if answer.token is not None else None
    problems = registration_problems(answer.mode or "", answer.server, token)
    if problems:
        return _repeat("; ".join(f"{key} {problem}" for key, problem in problems))
    return Outcome(Direction.FORWARD, answer)


def _handle_summary(model: InstallerModel, answer: Answer) -> Outcome:
    assert isinstance(answer, SummaryAnswer)
    if not answer.confirm:
        return Outcome(Direction.BACK, None)
    if not model.eula_accepted:  # unreachable through the steps; a guard for the invariant
        return _repeat("the licence must be accepted first")
    problem = model.decision.refusal(model.mode)
    if problem:
        return _repeat(problem)
    return Outcome(Direction.FORWARD, answer)


def _handle_progress(_model: InstallerModel, answer: Answer) -> Outcome:
    assert isinstance(answer, ProgressAnswer)
    return Outcome(Direction.FORWARD, answer)


def _handle_simple(_model: InstallerModel, answer: Answer) -> Outcome:
    return Outcome(Direction.FORWARD, answer)


_HANDLERS: dict[Screen, Callable[[InstallerModel, Answer], Outcome]] = {
    Screen.BOOT_MENU: _handle_simple,
    Screen.WELCOME: _handle_simple,
    Screen.EULA: _handle_eula,
    Screen.KEYBOARD: _handle_keyboard,
    Screen.EXISTING: _handle_existing,
    Screen.REGISTRATION: _handle_registration,
    Screen.SUMMARY: _handle_summary,
    Screen.PROGRESS: _handle_progress,
    Screen.FINISH: _handle_simple,
}


def handle(model: InstallerModel, answer: Answer) -> Outcome:
    """What `answer` on the current screen means: where to go, and what to keep."""
    screen = model.screen
    if screen.terminal:
        raise InternalError(f"the installer already ended ({screen})")
    return _HANDLERS[screen](model, answer)


# Screens whose handler explains a bad value better than "not one of the choices".
_OWN_VALUE_CHECKS = (Screen.KEYBOARD, Screen.EXISTING)


def choose(model: InstallerModel, value: str, fields: Mapping[str, str]) -> Outcome:
    """Choice `value` (with its fields) on the current screen: an unknown value repeats."""
    offered = [c.value for c in view(model).choices]
    if model.screen not in _OWN_VALUE_CHECKS and value not in offered:
        return _repeat(f"{short(value)} is not one of the choices: {', '.join(offered)}")
    return handle(model, answer_from_choice(model, value, fields))


def back(model: InstallerModel) -> Outcome:
    """Back: allowed where the step list allows it; elsewhere the screen repeats, saying why."""
    if steps.can_go_back(model, model.screen):
        return Outcome(Direction.BACK)
    return _repeat(f"there is no way back from the {model.screen.value} screen")


def quit_run(model: InstallerModel) -> Outcome:
    if model.screen in (Screen.PROGRESS, Screen.FINISH):
        return _repeat("the installation has started; it cannot be cancelled from here")
    return Outcome(Direction.EXIT, None, "Installation cancelled; nothing was written.")
