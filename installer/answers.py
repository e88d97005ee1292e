"""Answer files: the TOML that drives an unattended run, one section per screen.

`load_answers()` checks the whole file against the per-screen schema before the first screen
and reports every problem with its key path (unknown keys and wrong types included);
`check_for_run()` adds what depends on the medium and on what the probe found (a known
layout, the erase confirmation, the answers this run cannot do without). `record()` writes
the file that replays an interactive run; the Synchronizer token is never written.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enginekit.errors import UserInputError
from installer import rules, validators
from installer.model import (
    EulaAnswer,
    ExistingAnswer,
    FinishAnswer,
    InstallerModel,
    KeyboardAnswer,
    RegistrationAnswer,
    Screen,
    TargetInfo,
)
from installer.plan import InstallMode, RegistrationMode, Secret

MAX_FILE_BYTES = 1024 * 1024
MAX_LAYOUT_LENGTH = 32
MAX_DISK_ID_LENGTH = 64
_LAYOUT = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

# section -> key -> (type, how to say the type). Section names are the screens' names.
_BOOL = (bool, "true or false")
_STR = (str, "a string")
SCHEMA: dict[str, dict[str, tuple[type, str]]] = {
    Screen.EULA.value: {"accept": _BOOL},
    Screen.KEYBOARD.value: {"layout": _STR},
    Screen.EXISTING.value: {"action": _STR, "confirm_erase": _STR},
    Screen.REGISTRATION.value: {"mode": _STR, "server": _STR, "token": _STR},
    Screen.FINISH.value: {"reboot": _BOOL},
    # Which disk to install on: a device path or the disk id (the live installer's choice
    # among the computer's disks; on the host it must name --target).
    "disk": {"target": _STR},
}
_ACTIONS = (InstallMode.UPGRADE, InstallMode.ERASE, InstallMode.REPAIR)


class AnswerFileError(UserInputError):
    """The answer file has problems; `problems` lists each one with its key path."""

    def __init__(self, source: str, problems: list[str], hint: str | None = None) -> None:
        details: tuple[str, ...] = ()
        if len(problems) == 1:
            message = f"{source}: {problems[0]}"
        else:
            message, details = f"{source}: {len(problems)} problems", tuple(problems)
        super().__init__(
            message,
            hint=hint or "fix the answer file; check it with engine-install --validate",
            details=details,
        )
        self.source = source
        self.problems = tuple(problems)


@dataclass(frozen=True)
class AnswerFile:
    """A schema-valid answer file. None means the file does not answer that question."""

    source: str
    eula_accept: bool | None = None
    keyboard: str | None = None
    action: InstallMode | None = None
    confirm_erase: str | None = None
    registration_mode: RegistrationMode | None = None
    server: str | None = None
    token: Secret | None = None
    reboot: bool | None = None
    disk: str | None = None  # [disk] target: a device path or a disk id


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def _key(key: str) -> str:
    """A key as TOML would write it in a path, cut short if someone sent a huge one."""
    return key if _BARE_KEY.match(key) else validators.short(key)


def _type_name(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    for kind, name in names.items():
        if type(value) is kind:
            return name
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return "a date or time"


def _check_types(document: dict[str, Any], problems: list[str]) -> dict[str, dict[str, Any]]:
    """Unknown sections and keys, and wrong types; returns the well-typed values only."""
    good: dict[str, dict[str, Any]] = {}
    for section, content in document.items():
        if section not in SCHEMA:
            problems.append(
                f"{_key(section)}: unknown section; known sections are " + ", ".join(SCHEMA)
            )
            continue
        if not isinstance(content, dict):
            problems.append(f"{section}: must be a table ([{section}]), not {_type_name(content)}")
            continue
        good[section] = {}
        for key, value in content.items():
            spec = SCHEMA[section].get(key)
            if spec is None:
                problems.append(
                    f"{section}.{_key(key)}: unknown key; known keys are "
                    + ", ".join(SCHEMA[section])
                )
                continue
            kind, kind_name = spec
            if type(value) is not kind:
                problems.append(f"{section}.{key}: must be {kind_name}, not {_type_name(value)}")
                continue
            good[section][key] = value
    return good


def _given(document: dict[str, Any], section: str, key: str) -> bool:
    """Whether the file has `section.key` at all (even with a wrong type, reported already)."""
    content = document.get(section)
    return isinstance(content, dict) and key in content


def _check_values(
    values: dict[str, dict[str, Any]],
    document: dict[str, Any],
    source: str,
    problems: list[str],
) -> AnswerFile:
    eula = values.get("eula", {})
    keyboard = values.get("keyboard", {})
    existing = values.get("existing", {})
    registration = values.get("registration", {})
    finish = values.get("finish", {})
    disk = values.get("disk", {}).get("target")
    if disk is not None and not disk.strip():
        problems.append("disk.target: is empty; give a device path (/dev/sda) or a disk id")

    layout = keyboard.get("layout")
    if layout is not None:
        if len(layout) > MAX_LAYOUT_LENGTH:
            problems.append(
                f"keyboard.layout: too long ({len(layout)} characters; at most {MAX_LAYOUT_LENGTH})"
            )
            layout = None
        elif not _LAYOUT.match(layout):
            problems.append(
                f"keyboard.layout: {validators.short(layout)} is not a layout name "
                "(lower-case letters, digits, - and _)"
            )
            layout = None
    if "keyboard" in values and not _given(document, "keyboard", "layout"):
        problems.append("keyboard.layout: is needed when there is a [keyboard] section")

    action: InstallMode | None = None
    raw_action = existing.get("action")
    if raw_action is not None:
        if raw_action in tuple(a.value for a in _ACTIONS):
            action = InstallMode(raw_action)
        else:
            problems.append(
                f"existing.action: {validators.short(raw_action)} is not an action; choose one of "
                + ", ".join(a.value for a in _ACTIONS)
            )
    elif "existing" in values and not _given(document, "existing", "action"):
        problems.append("existing.action: is needed when there is an [existing] section")
    confirm = existing.get("confirm_erase")
    if confirm is not None:
        if len(confirm) > MAX_DISK_ID_LENGTH:
            problems.append(
                f"existing.confirm_erase: too long ({len(confirm)} characters; a disk id has "
                f"at most {MAX_DISK_ID_LENGTH})"
            )
            confirm = None
        elif raw_action is not None and action is not InstallMode.ERASE:
            problems.append('existing.confirm_erase: only goes with action = "erase"')
    elif action is InstallMode.ERASE and not _given(document, "existing", "confirm_erase"):
        problems.append(
            'existing.confirm_erase: is needed with action = "erase": the disk id that '
            "engine-disk inspect shows"
        )

    mode: RegistrationMode | None = None
    raw_mode = registration.get("mode")
    server = registration.get("server")
    token = registration.get("token")
    if raw_mode is not None:
        if raw_mode in tuple(RegistrationMode):
            mode = RegistrationMode(raw_mode)
            for key, problem in validators.registration_problems(mode, server, token):
                if (
                    problem.startswith("is needed")
                    and _given(document, "registration", key)
                    and key not in registration
                ):
                    continue  # given with a wrong type: reported already
                problems.append(f"registration.{key}: {problem}")
        else:
            problems.append(
                f"registration.mode: {validators.short(raw_mode)} is not a registration mode; "
                "choose one of " + ", ".join(m.value for m in RegistrationMode)
            )
    elif "registration" in values and not _given(document, "registration", "mode"):
        problems.append(
            "registration.mode: is needed when there is a [registration] section "
            '("synchronizer" or "standalone")'
        )
    return AnswerFile(
        source=source,
        eula_accept=eula.get("accept"),
        keyboard=layout,
        action=action,
        confirm_erase=confirm,
        registration_mode=mode,
        server=server if mode is RegistrationMode.SYNCHRONIZER else None,
        token=Secret(token)
        if token is not None and mode is RegistrationMode.SYNCHRONIZER
        else None,
        reboot=finish.get("reboot"),
        disk=disk,
    )


def parse_answers(data: bytes, source: str) -> AnswerFile:
    """Check `data` (the bytes of an answer file named `source`) against the whole schema."""
    if len(data) > MAX_FILE_BYTES:
        # `data` may be only the first MAX_FILE_BYTES + 1 bytes (load_answers reads no more),
        # so say what is known: it is over the limit.
        raise AnswerFileError(
            source,
            [f"is larger than {MAX_FILE_BYTES} bytes, the most an answer file may have"],
            hint="an answer file is a few lines of TOML; check that this is the right file",
        )
    try:
        # utf-8-sig: a byte order mark (Notepad writes one) is not part of the TOML.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnswerFileError(
            source,
            [
                f"is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                f"{exc.start + len(data) - len(exc.object)})"
            ],
            hint="save the answer file as UTF-8",
        ) from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AnswerFileError(
            source,
            [f"is not valid TOML: {exc}"],
            hint="see the example in engine-install --help",
        ) from None
    problems: list[str] = []
    values = _check_types(document, problems)
    answers = _check_values(values, document, source, problems)
    if problems:
        raise AnswerFileError(source, problems)
    return answers


def load_answers(path: Path) -> AnswerFile:
    """Read and check the answer file at `path` (schema only; see `check_for_run`)."""
    try:
        # Non-blocking, then checked: a FIFO must not hang the run waiting for a writer, and
        # a device (/dev/null, /dev/zero) is no answer file, not an empty one.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as stream:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UserInputError(
                    f"{path}: not a regular file, so not an answer file",
                    hint="give the path of an answer file, e.g. --answers upgrade.toml",
                )
            data = stream.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise UserInputError(
            f"{path}: no such answer file", hint="check the path of the answer file"
        ) from None
    except IsADirectoryError:
        raise UserInputError(
            f"{path}: is a directory, not an answer file",
            hint="give the path of an answer file, e.g. --answers upgrade.toml",
        ) from None
    except OSError as exc:
        raise UserInputError(
            f"{path}: cannot read the answer file: {exc.strerror}",
            hint="check the answer file's permissions",
        ) from None
    return parse_answers(data, str(path))


def names_disk(name: str, target: TargetInfo) -> bool:
    """Whether `name` ([disk] target) is `target`'s device path or its disk id."""
    return name == str(target.path) or (target.disk_id is not None and name == target.disk_id)


def check_for_run(
    answers: AnswerFile, model: InstallerModel, *, decline_is_problem: bool = False
) -> None:
    """Everything the run needs from `answers`, given the medium and what the probe found.

    Raises AnswerFileError listing every problem (missing answers in one line), or
    InstallRefused when the only problem is that the rules refuse the chosen action.
    `decline_is_problem` (for --validate) also reports `eula.accept = false`, which a run
    treats as the user's choice to stop before anything is written: without it, a declined
    licence passes whatever else is missing, so the run ends with the decline.
    """
    if answers.eula_accept is False and not decline_is_problem:
        # The run stops at the licence screen, before any other answer is asked for: the
        # decline is what it reports, not the answers it would never reach.
        return
    problems: list[str] = []
    missing: list[str] = []
    found = model.target.installation
    if answers.disk is not None and not names_disk(answers.disk, model.target):
        problems.append(
            f"disk.target: names {validators.short(answers.disk)}, but this run installs on "
            f"{model.target.path} (disk id {model.target.disk_id or 'none: blank'})"
        )
    refusal: rules.InstallRefused | None = None
    if answers.eula_accept is None:
        missing.append("eula.accept")
    elif not answers.eula_accept and decline_is_problem:
        problems.append(
            "eula.accept: is false: the run would stop at the licence screen and install "
            "nothing; set accept = true to install"
        )
    other = model.target.other_data
    if found is None and other is not None:
        # Not blank: the only way on is an erase, with the disk id typed out.
        if answers.action is None:
            problems.append(
                f"existing.action: is needed: the target holds data but no Engine installation "
                f'({other}); to install on it, erase it: action = "erase" and confirm_erase = '
                f'"{model.target.disk_id}"'
            )
            mode = InstallMode.ERASE
        else:
            mode = answers.action
            reason = model.decision.refusal(answers.action)
            if reason is not None:
                problems.append(f"existing.action: {reason}")
            elif answers.confirm_erase is not None:
                problem = validators.existing_problem(model, mode, answers.confirm_erase)
                if problem:
                    problems.append(f"existing.confirm_erase: {problem}")
    elif found is None:
        if answers.action is not None:
            why = model.target.not_found_reason or "no Engine installation"
            problems.append(
                f"existing.action: the target has no Engine installation ({why}); remove the "
                "[existing] section for a fresh install"
            )
        mode = InstallMode.FRESH
    else:
        if answers.action is None:
            missing.append("existing.action")
            mode = model.decision.allowed[0]
        else:
            mode = answers.action
            reason = model.decision.refusal(answers.action)
            if reason is not None:
                refusal = rules.InstallRefused(reason, hint=model.decision.hints.get(mode))
            elif answers.action is InstallMode.ERASE and answers.confirm_erase is not None:
                problem = validators.existing_problem(model, mode, answers.confirm_erase)
                if problem:
                    problems.append(f"existing.confirm_erase: {problem}")
    if answers.keyboard is None:
        if mode in (InstallMode.FRESH, InstallMode.ERASE):
            missing.append("keyboard.layout")
    else:
        problem = validators.layout_problem(model.medium.keyboards, answers.keyboard)
        if problem:
            problems.append(f"keyboard.layout: {problem}")
    if answers.registration_mode is None and mode in (InstallMode.FRESH, InstallMode.ERASE):
        missing.append("registration.mode")
    if missing:
        if found:
            found_text = f"Engine {found.version} found on the target"
        elif other is not None:
            found_text = "the target holds data but no Engine"
        else:
            found_text = "blank target"
        problems.insert(0, f"missing answers for this run ({found_text}): " + ", ".join(missing))
    if refusal is not None:
        if not problems:
            raise refusal
        problems.append(f"existing.action: {refusal.message}")
    if problems:
        raise AnswerFileError(answers.source, problems)


def check_for_medium(answers: AnswerFile, keyboards: tuple[str, ...]) -> list[str]:
    """What can be known about answers baked into a medium before any computer is seen:
    the licence is accepted (else every computer would stop at it), the layout is one the
    medium offers, an erase names the one disk id it may erase (schema rule) and gives what
    a new installation needs. What depends on the computer (is there an Engine, which disk)
    is checked there, by `check_for_run`, before anything is written.

    Returns warnings: answers that upgrade well but would stop, with nothing written, on a
    computer whose disk is blank (a fresh install needs a layout and a registration mode)."""
    problems: list[str] = []
    new_install_needs = [
        name
        for name, given in (
            ("keyboard.layout", answers.keyboard),
            ("registration.mode", answers.registration_mode),
        )
        if given is None
    ]
    if answers.action is InstallMode.ERASE and new_install_needs:
        problems.append(
            "existing.action: erase installs Engine anew, which needs "
            + ", ".join(new_install_needs)
        )
    if answers.eula_accept is None:
        problems.append("eula.accept: is needed: a medium with answers runs with no keyboard")
    elif not answers.eula_accept:
        problems.append(
            "eula.accept: is false: every computer would stop at the licence screen and "
            "install nothing; set accept = true"
        )
    if answers.keyboard is not None:
        problem = validators.layout_problem(keyboards, answers.keyboard)
        if problem:
            problems.append(f"keyboard.layout: {problem} (the layouts this medium offers)")
    if problems:
        raise AnswerFileError(
            answers.source, problems, hint="fix the answer file, then build again"
        )
    if new_install_needs:
        return [
            f"{answers.source}: a computer with a blank disk would stop at the start, with "
            f"nothing written: a fresh install needs {', '.join(new_install_needs)}; add "
            f"{'them' if len(new_install_needs) > 1 else 'it'} if this medium may meet one"
        ]
    return []


# ---- recording ------------------------------------------------------------------------------


def _toml_string(value: str) -> str:
    out = ['"']
    for char in value:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _toml_bool(value: bool) -> str:
    return "true" if value else "false"


def record(model: InstallerModel) -> str:
    """An answer file that replays the run `model` went through, unattended.

    Only the screens this run showed are written. The Synchronizer token is never written:
    a comment says where to add it before replaying.
    """
    lines = [
        "# engine-install answer file, recorded from a run; replay it with --answers.",
        f"# medium: Engine {model.medium.version}; target: {model.target.path}",
        "",
    ]
    eula = model.answer(Screen.EULA)
    if isinstance(eula, EulaAnswer):
        lines += ["[eula]", f"accept = {_toml_bool(eula.accept)}", ""]
    keyboard = model.answer(Screen.KEYBOARD)
    if isinstance(keyboard, KeyboardAnswer):
        lines += ["[keyboard]", f"layout = {_toml_string(keyboard.layout)}", ""]
    existing = model.answer(Screen.EXISTING)
    if model.asks_existing and isinstance(existing, ExistingAnswer):
        lines += ["[existing]", f"action = {_toml_string(existing.action.value)}"]
        if existing.action is InstallMode.ERASE and existing.confirm_erase is not None:
            lines.append(f"confirm_erase = {_toml_string(existing.confirm_erase)}")
        lines.append("")
    registration = model.answer(Screen.REGISTRATION)
    if isinstance(registration, RegistrationAnswer) and not registration.keep:
        lines += ["[registration]", f"mode = {_toml_string(registration.mode or 'standalone')}"]
        if registration.mode == RegistrationMode.SYNCHRONIZER:
            if registration.server is not None:
                lines.append(f"server = {_toml_string(registration.server)}")
            lines.append("# The registration token is never recorded; add it before replaying:")
            lines.append('# token = "..."')
        lines.append("")
    finish = model.answer(Screen.FINISH)
    if isinstance(finish, FinishAnswer):
        lines += ["[finish]", f"reboot = {_toml_bool(finish.reboot)}", ""]
    return "\n".join(lines)
