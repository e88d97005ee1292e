"""The checks a screen answer and an answer-file value share, below both.

`installer.screens` (the views and handlers) and `installer.answers` (the answer-file schema)
both call these, so an unattended run and an interactive one refuse the same things with the
same words, and neither module has to import the other (the answer file never loads the UI).
"""

from __future__ import annotations

from disk_images.state import RegistrationMode
from installer.addresses import server_problem
from installer.model import InstallerModel
from installer.plan import InstallMode

MAX_TOKEN_LENGTH = 4096


def short(value: object, limit: int = 40) -> str:
    """repr() of a user's value, cut short so a huge string cannot flood an error line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'"


def layout_problem(model_keyboards: tuple[str, ...], layout: str) -> str | None:
    if layout in model_keyboards:
        return None
    return f"{short(layout)} is not a known layout; choose one of {', '.join(model_keyboards)}"


def existing_problem(model: InstallerModel, action: InstallMode, confirm: str | None) -> str | None:
    """Why this existing-installation answer cannot be carried out (None: it can)."""
    refusal = model.decision.refusal(action)
    if refusal is not None:
        return refusal
    if action is InstallMode.ERASE and confirm != model.target.disk_id:
        return (
            f"to erase, confirm with the disk id {model.target.disk_id!r} "
            f"(got {short(confirm) if confirm is not None else 'nothing'})"
        )
    return None


def token_problem(token: str) -> str | None:
    # Never echo the token: this line may end up in a log.
    if not token:
        return "is empty"
    if len(token) > MAX_TOKEN_LENGTH:
        return f"too long ({len(token)} characters; at most {MAX_TOKEN_LENGTH})"
    if any(c.isspace() or not c.isprintable() for c in token):
        return "may not contain spaces or control characters"
    return None


def registration_problems(
    mode: str, server: str | None, token: str | None
) -> list[tuple[str, str]]:
    """(key, problem) for a registration answer; empty when it is fine."""
    problems: list[tuple[str, str]] = []
    if mode == RegistrationMode.SYNCHRONIZER:
        if server == "":
            problems.append(("server", 'is empty; a server is needed with mode = "synchronizer"'))
        elif server is None:
            problems.append(("server", 'is needed with mode = "synchronizer"'))
        else:
            problem = server_problem(server)
            if problem:
                problems.append(
                    (
                        "server",
                        f"{short(server)} is not a host name, host:port or http(s) URL ({problem})",
                    )
                )
        if token is None:
            problems.append(("token", 'is needed with mode = "synchronizer"'))
        else:
            problem = token_problem(token)
            if problem:
                problems.append(("token", problem))
    elif mode == RegistrationMode.STANDALONE:
        if server is not None:
            problems.append(("server", 'only goes with mode = "synchronizer"'))
        if token is not None:
            problems.append(("token", 'only goes with mode = "synchronizer"'))
    return problems
