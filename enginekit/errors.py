"""The root of every EngineKit error, split by who is at fault.

Libraries raise these; only the command-line frame (`enginekit.cli`) turns one into a single
`error:` line plus a `hint:` and a non-zero exit status. Each package derives its own small
hierarchy from these three roots.
"""

from __future__ import annotations


class EngineKitError(Exception):
    """Base of all errors we raise on purpose. `hint` says what the user can do about it;
    `details` (optional) lists individual problems, one line each."""

    exit_status = 1

    def __init__(
        self, message: str, hint: str | None = None, details: tuple[str, ...] = ()
    ) -> None:
        from enginekit.text import one_line

        # Messages quote untrusted names and values; the contract is one line each, so a
        # newline in a value can never fake a second `error:` line. A list of problems goes
        # in `details`: one escaped line each, printed indented under the error line.
        message = one_line(message)
        hint = one_line(hint) if hint is not None else None
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = tuple(one_line(d) for d in details)

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
