"""The root of every EngineKit error, split by who is at fault.

Libraries raise these; only the command-line frame (`enginekit.cli`) turns one into a single
`error:` line plus a `hint:` and a non-zero exit status (or, with `--json`, one JSON object).
Each package derives its own small hierarchy from these three roots. Every error has a hint:
given where it is raised, or the class's `default_hint` when the class alone says what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Self

INTERNAL_ERROR_HINT = "this is a bug in EngineKit; rerun with --debug and report it"


class EngineKitError(Exception):
    """Base of all errors we raise on purpose. `hint` says what the user can do about it;
    `details` (optional) lists individual problems, one line each; `result` (optional, set
    with `with_result`) is what the command found before it failed, for `--json`."""

    exit_status = 1
    # The hint when the raise site gives none. Only classes whose name alone tells the user
    # what to do set one; a raise of any other class must give its own (tests check both).
    default_hint: ClassVar[str | None] = None

    def __init__(
        self, message: str, hint: str | None = None, details: tuple[str, ...] = ()
    ) -> None:
        from enginekit.text import one_line

        # Messages quote untrusted names and values; the contract is one line each, so a
        # newline in a value can never fake a second `error:` line. A list of problems goes
        # in `details`: one escaped line each, printed indented under the error line.
        message = one_line(message)
        if hint is None:
            hint = self.default_hint
        super().__init__(message)
        self.message = message
        self.hint = one_line(hint) if hint is not None else None
        self.details = tuple(one_line(d) for d in details)
        self.result: Mapping[str, object] | None = None

    def with_result(self, result: Mapping[str, object]) -> Self:
        """Attach what the command found (a report) so `--json` prints it with the error."""
        self.result = result
        return self

    def __str__(self) -> str:
        return "; ".join((self.message, *self.details))


class UserInputError(EngineKitError):
    """The caller gave us something wrong: a bad file, a bad argument, a refused operation."""

    exit_status = 2


class HostError(EngineKitError):
    """This machine lacks something: a tool, a permission, a kernel feature, free space."""

    exit_status = 3


class MissingCapability(HostError):
    """This machine cannot do something at all: a program is not installed, a firmware or
    kernel file is absent, loop devices cannot be had. Unlike a `CommandFailed` (a tool that
    is there ran and failed), nothing was tried."""


class InternalError(EngineKitError):
    """A bug in EngineKit: an invariant did not hold."""

    exit_status = 70
    default_hint = INTERNAL_ERROR_HINT


class CommandFailed(HostError):
    """An external program exited non-zero. Carries the command line and its stderr."""

    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        from enginekit.process import format_argv

        tail = stderr.strip().splitlines()[-3:]
        detail = ("; ".join(tail)) if tail else f"exit status {returncode}"
        super().__init__(
            f"{argv[0]} failed: {detail}",
            hint=f"command was: {format_argv(argv)}",
        )
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr


class Interrupted(EngineKitError):
    """The user pressed Ctrl-C (or we got SIGTERM); carries what state was left behind."""

    exit_status = 130
