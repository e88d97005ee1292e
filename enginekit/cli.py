"""The frame every command-line entry point runs in.

It parses `--debug`, sets up logging, and turns exceptions into what a user should see: an
EngineKitError becomes `error: <what>` and `hint: <what to do>` on stderr with the error's exit
status; Ctrl-C (or SIGTERM, or a closed terminal: `enginekit.hangup`) becomes one line and
status 130; anything else is a bug, reported in one line with a request to rerun with
--debug. Tracebacks are shown only with --debug. When the command
line has `--json`, the same failure is also one JSON object on stdout (`error_json`), and
nothing else is printed there.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from types import FrameType
from typing import Any, NoReturn

from enginekit.errors import EngineKitError, InternalError, Interrupted, UserInputError
from enginekit.hangup import watch_for_hangup
from enginekit.interrupts import take_over_interrupts
from enginekit.text import wrap_block, wrap_hanging

# Whether this run's failures are also printed as JSON: set by run_main from the command line
# before parsing, so even a usage error of a `--json` run gives a JSON object.
_json_errors: ContextVar[bool] = ContextVar("enginekit_json_errors", default=False)


class UsageError(UserInputError):
    """The command line itself is wrong (argparse's complaint)."""


# argparse's own split of a usage line into its parts: an optional group stays one part.
_USAGE_PART = re.compile(r"\(.*?\)+(?=\s|$)|\[.*?\]+(?=\s|$)|\S+")
# A trailing comment in an example line (`action = "upgrade"   # or ...`).
_TRAILING_COMMENT = re.compile(r"^(?P<code>.*?\S)\s{2,}# (?P<comment>.*)$")
_USAGE_INDENT = 4
# Below this many columns an option's help goes under it, this far in.
_NARROW = 60
_NARROW_HELP_COLUMN = 8


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that fits the terminal, down to 40 columns, with nothing cut.

    Descriptions and epilogs keep their authors' line breaks (examples stay examples); a
    line wider than the terminal wraps, and in an example a comment wraps onto lines of its
    own that start with `#`, so the example stays valid to paste. Usage lines wrap part by
    part (an optional group is never split) under a short indent when argparse's own
    indent, the width of `usage: PROG `, would push a part past the edge."""

    def __init__(self, prog: str, **kwargs: Any) -> None:
        super().__init__(prog, **kwargs)
        if self._width < _NARROW:
            # Each option's help on the lines below it, a few columns in, not in a column
            # that leaves half the width to the words.
            self._max_help_position = _NARROW_HELP_COLUMN

    def _split_lines(self, text: str, width: int) -> list[str]:
        # Words are never cut ("check-" / "ins", "$ENGINEKIT_" / "CACHE"): a reader would
        # copy them wrong.
        return textwrap.wrap(
            " ".join(text.split()), width, break_long_words=False, break_on_hyphens=False
        )

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines: list[str] = []
        for line in super()._fill_text(text, width + len(indent), indent).splitlines():
            lines += _wrap_example_line(line, width + len(indent))
        return "\n".join(lines)

    def _format_usage(
        self,
        usage: str | None,
        actions: Any,
        groups: Any,
        prefix: str | None,
    ) -> str:
        formatted = super()._format_usage(usage, actions, groups, prefix)
        if all(len(line) <= self._width for line in formatted.splitlines()):
            return formatted
        flat = " ".join(formatted.split())
        lines = [""]
        for part in _USAGE_PART.findall(flat):
            # A group too wide for a line of its own is split between its words.
            words = [part] if len(part) <= self._width - _USAGE_INDENT else part.split(" ")
            for word in words:
                if not lines[-1]:
                    lines[-1] = word
                elif len(lines[-1]) + 1 + len(word) <= self._width:
                    lines[-1] += " " + word
                else:
                    lines.append(" " * _USAGE_INDENT + word)
        return "\n".join(lines) + "\n\n"


def _wrap_example_line(line: str, width: int) -> list[str]:
    """One line of a description or example, wrapped to `width` columns."""
    if len(line) <= width:
        return [line]
    indent = " " * (len(line) - len(line.lstrip(" ")))
    body = line.strip()
    match = _TRAILING_COMMENT.match(body)
    if body.startswith("#"):
        return _wrap_comment(body.lstrip("# "), indent, width)
    if match is not None:
        return [indent + match["code"], *_wrap_comment(match["comment"], indent, width)]
    return wrap_hanging(line, width, 2 if indent else 0)


def _wrap_comment(comment: str, indent: str, width: int) -> list[str]:
    prefix = indent + "# "
    return [prefix + piece.strip() for piece in wrap_hanging(comment, width - len(prefix))]


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one `error:` line plus a hint pointing at --help, and
    the help fits a narrow terminal (`HelpFormatter`); sub-command parsers inherit both."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

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


def sigterm_as_interrupt(_signum: int, _frame: FrameType | None) -> None:
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
    signal.signal(signal.SIGTERM, sigterm_as_interrupt)
    watch_for_hangup()  # a closed terminal stops the command as Ctrl-C does
    # Values read from media and disks may hold lone surrogates or odd bytes: print them
    # escaped rather than dying with UnicodeEncodeError halfway through a report.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    take_over_interrupts()
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
