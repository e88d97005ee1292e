"""The frame every command-line entry point runs in.

It parses `--debug`, sets up logging, and turns exceptions into what a user should see: an
EngineKitError becomes `error: <what>` and `hint: <what to do>` with the error's exit status;
Ctrl-C becomes one line and status 130; anything else is a bug, reported in one line with a
request to rerun with --debug. Tracebacks are shown only with --debug.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType

from enginekit.errors import EngineKitError, Interrupted


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one `error:` line plus a hint pointing at --help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {self.prog}: {message}\nhint: see '{self.prog} --help'\n")
        raise SystemExit(2)


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--debug", action="store_true", help="log every command run and show tracebacks"
    )


def _sigterm_as_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def print_error(exc: EngineKitError) -> None:
    sys.stderr.write(f"error: {exc.message}\n")
    for detail in exc.details:
        sys.stderr.write(f"  {detail}\n")
    if exc.hint:
        sys.stderr.write(f"hint: {exc.hint}\n")


def run_main(
    parser: argparse.ArgumentParser,
    handler: Callable[[argparse.Namespace], int],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse argv, call handler(args), and map any failure to one clear line and an exit code."""
    args = parser.parse_args(argv)
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
    except Interrupted as exc:
        if debug:
            raise
        print_error(exc)
        return exc.exit_status
    except KeyboardInterrupt:
        if debug:
            raise
        sys.stderr.write("error: interrupted; everything this command had set up was released\n")
        return 130
    except EngineKitError as exc:
        if debug:
            raise
        print_error(exc)
        return exc.exit_status
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); not an error worth a message.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:  # the last line of defence before a traceback
        if debug:
            raise
        sys.stderr.write(f"error: internal error: {type(exc).__name__}: {exc}\n")
        sys.stderr.write("hint: this is a bug in EngineKit; rerun with --debug and report it\n")
        return 70
