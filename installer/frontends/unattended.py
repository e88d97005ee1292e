"""The unattended front end: answers every screen from a checked answer file.

The file was validated whole before the first screen (`installer.answers`), so a screen that
still refuses an answer here is reported as one clear error naming the file, never a prompt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from enginekit.errors import InternalError, UserInputError
from installer.answers import AnswerFile, check_for_run
from installer.model import Screen
from installer.plan import InstallMode, InstallReport, ProgressCallback
from installer.validators import registration_problems

if TYPE_CHECKING:
    from installer.frontends.api import Installer


def _answer_screen(installer: Installer, answers: AnswerFile) -> None:
    model = installer.model
    screen = installer.screen
    if screen is Screen.BOOT_MENU:
        installer.choose("install")
    elif screen is Screen.WELCOME:
        installer.choose("next")
    elif screen is Screen.EULA:
        installer.choose("accept" if answers.eula_accept else "decline")
    elif screen is Screen.KEYBOARD:
        installer.choose(answers.keyboard or model.keyboard)
    elif screen is Screen.EXISTING:
        action = answers.action or model.decision.allowed[0]
        fields = {"confirm_erase": answers.confirm_erase} if answers.confirm_erase else {}
        installer.choose(action.value, **fields)
    elif screen is Screen.REGISTRATION:
        if answers.registration_mode is None:
            # check_for_run made sure this only happens when there is something to keep.
            installer.choose(
                "keep" if model.mode in (InstallMode.UPGRADE, InstallMode.REPAIR) else "standalone"
            )
        else:
            fields = {}
            if answers.server is not None:
                fields["server"] = answers.server
            if answers.token is not None:
                fields["token"] = answers.token.reveal()
            installer.choose(answers.registration_mode.value, **fields)
    elif screen is Screen.SUMMARY:
        installer.choose("install")
    elif screen is Screen.FINISH:
        installer.choose("reboot" if answers.reboot else "no-reboot")
    else:
        raise InternalError(f"no unattended answer for the {screen.value} screen")


_SCREEN_KEYS = {
    Screen.EULA: "eula.accept",
    Screen.KEYBOARD: "keyboard.layout",
    Screen.EXISTING: "existing.action",
    Screen.REGISTRATION: "registration.mode",
    Screen.FINISH: "finish.reboot",
}


def _key_path(screen: Screen, answers: AnswerFile) -> str:
    """The answer-file key a refused screen answer came from, for the error line."""
    if screen is Screen.REGISTRATION and answers.registration_mode is not None:
        token = answers.token.reveal() if answers.token is not None else None
        problems = registration_problems(answers.registration_mode, answers.server, token)
        if problems:
            return "registration." + problems[0][0]
    return _SCREEN_KEYS.get(screen, screen.value)


def drive(
    installer: Installer, answers: AnswerFile, progress: ProgressCallback | None = None
) -> InstallReport | None:
    """Run every screen from `answers`. Returns the engine's report, or None if the answers
    end the run before anything is written (the licence declined)."""
    check_for_run(answers, installer.model)
    installer.reboot_hint = bool(answers.reboot)
    while not installer.screen.terminal:
        before = len(installer.model.history)
        if installer.screen is Screen.PROGRESS:
            installer.install(progress)
            continue
        screen = installer.screen
        _answer_screen(installer, answers)
        if installer.screen is screen and len(installer.model.history) > before:
            # A repeat: the screen refused an answer the checks let through.
            raise UserInputError(
                f"{answers.source}: {_key_path(screen, answers)}: the {screen.value} screen "
                f"refused the answer: {installer.message}",
                hint="fix the answer file; check it with engine-install --validate FILE "
                "--media ISO --target DISK",
            )
    return installer.report
