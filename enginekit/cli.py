"""The frame every command-line entry point runs in.

It parses `--debug`, sets up logging, and turns exceptions into what a user should see: an
EngineKitError becomes `error: <what>` and `hint: <what to do>` on stderr with the error's exit
status; Ctrl-C becomes one line and status 130; anything else is a bug, reported in one line
with a request to rerun with --debug. Tracebacks are shown only with --debug. When the command
line has `--json`, the same failure is also one JSON object on stdout (`error_json`), and
nothing else is printed there.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from types import FrameType
from typing import Any, NoReturn

from enginekit.errors import EngineKitError, InternalError, Interrupted, UserInputError
from enginekit.text import wrap_block, wrap_hanging

# Whether this run's failures are also printed as JSON: set by run_main from the command line
# before parsing, so even a usage error of a `--json` run gives a JSON object.
_json_errors: ContextVar[bool] = ContextVar("enginekit_json_errors", default=False)


class UsageError(UserInputError):
    """The command line itself is wrong (argparse's complaint)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one `error:` line plus a hint pointing at --help."""

    def error(self, message: str) -> NoReturn:
        fail(UsageError(f"{self.prog}: {message}", hint=f"see '{self.prog} --help'"))
        raise SystemExit(UsageError.exit_status)


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """The options every program has, on its top-level parser: `--debug`."""
    parser.add_argument(
        "--debug", action="store_true", help="log every command run and show tracebacks"
    )


def add_debug_option(parser: argparse.ArgumentParser) -> None:
    """`--debug` on a sub-command too, so it may come after the sub-command's name. Its
    default is SUPPRESS: a sub-command's default must not undo `PROG --debug COMMAND`."""
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log every command run and show tracebacks",
    )


def positive_seconds(text: str) -> float:
    """argparse type for --timeout: a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds (got {text})")
    return value


def add_json_option(parser: argparse.ArgumentParser, what: str) -> None:
    """`--json`: the result (`what`) as one JSON object on stdout; a failure as one too."""
    parser.add_argument(
        "--json",
        action="store_true",
        help=f"print {what} as JSON on stdout; a failure prints a JSON object with "
        "error, hint, details and exit_status",
    )


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def print_wrapped(text: str) -> None:
    """Print `text` on stdout; on a terminal, long lines wrap with their indent kept
    (`wrap_block`). A pipe or a file gets the lines as they are."""
    if not sys.stdout.isatty():
        print(text)
        return
    for line in wrap_block(text, shutil.get_terminal_size().columns):
        print(line)


def _sigterm_as_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def error_json(exc: EngineKitError) -> dict[str, Any]:
    """The `--json` failure object: what the command found (if anything), then the error."""
    result: Mapping[str, object] = exc.result or {}
    return {
        **result,
        "error": exc.message,
        "hint": exc.hint,
        "details": list(exc.details),
        "exit_status": exc.exit_status,
    }


def _stderr_width() -> int | None:
    """The terminal's width when stderr is one; None when it is a file or a pipe (those get
    one line per message, whatever its length, so that scripts can grep them)."""
    if not sys.stderr.isatty():
        return None
    return shutil.get_terminal_size().columns


def _write_wrapped(line: str, hang: int, width: int | None) -> None:
    lines = [line] if width is None else wrap_hanging(line, width, hang)
    sys.stderr.write("".join(f"{ln}\n" for ln in lines))


def print_error(exc: EngineKitError) -> None:
    """`error:`, the details indented under it, and `hint:` on stderr. On a terminal, long
    lines wrap with their continuation lines indented under the text they continue."""
    width = _stderr_width()
    _write_wrapped(f"error: {exc.message}", len("error: "), width)
    for detail in exc.details:
        _write_wrapped(f"  {detail}", 2, width)
    if exc.hint:
        _write_wrapped(f"hint: {exc.hint}", len("hint: "), width)


def fail(exc: EngineKitError) -> int:
    """Report `exc` as this run reports failures; returns its exit status."""
    print_error(exc)
    if _json_errors.get():
        print_json(error_json(exc))
    return exc.exit_status


def run_main(
    parser: argparse.ArgumentParser,
    handler: Callable[[argparse.Namespace], int],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse argv, call handler(args), and map any failure to one clear line and an exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    token = _json_errors.set("--json" in arguments)
    try:
        return _parse_and_run(parser, handler, arguments)
    finally:
        _json_errors.reset(token)  # a later run in this process (a test) starts afresh


def _parse_and_run(
    parser: argparse.ArgumentParser,
    handler: Callable[[argparse.Namespace], int],
    arguments: list[str],
) -> int:
    args = parser.parse_args(arguments)
    _json_errors.set(bool(getattr(args, "json", False)))
    debug = bool(getattr(args, "debug", False)) or os.environ.get("ENGINEKIT_DEBUG") == "1"
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    # Values read from media and disks may hold lone surrogates or odd bytes: print them
    # escaped rather than dying with UnicodeEncodeError halfway through a report.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    try:
        return handler(args)
    except KeyboardInterrupt:
        if debug:
            raise
        return fail(
            Interrupted(
                "interrupted; everything this command had set up was released",
                hint="run the command again when you are ready",
            )
        )
    except EngineKitError as exc:
        if debug:
            raise
        return fail(exc)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); not an error worth a message.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:  # the last line of defence before a traceback
        if debug:
            raise
        return fail(InternalError(f"internal error: {type(exc).__name__}: {exc}"))
