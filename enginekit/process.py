"""The one place that runs external programs.

`run()` takes an argument list (never a shell string), sets LC_ALL=C, closes stdin unless
input is given, logs the command as a copy-pasteable line at debug level, and raises
`CommandFailed` carrying the command and its stderr. Nothing else calls `subprocess.run`;
long-lived children (QEMU) go through `spawn()`.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from enginekit.errors import CommandFailed, HostError, MissingCapability

log = logging.getLogger(__name__)

StrPath = str | os.PathLike[str]


def format_argv(argv: Sequence[StrPath]) -> str:
    """The command as a line a person can paste into a shell."""
    return shlex.join(str(a) for a in argv)


def _environment(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    if extra:
        env.update(extra)
    return env


def require_tool(name: str, package: str) -> str:
    """Path of program `name`, or a HostError saying which Debian package brings it."""
    for directory in ("", "/usr/sbin", "/sbin"):
        found = shutil.which(name) if not directory else shutil.which(name, path=directory)
        if found:
            return found
    raise MissingCapability(
        f"{name} is not installed",
        hint=f"run tools/setup (or: apt-get install {package})",
    )


def run(
    argv: Sequence[StrPath],
    *,
    input: bytes | None = None,
    check: bool = True,
    timeout: float | None = None,
    cwd: StrPath | None = None,
    env: Mapping[str, str] | None = None,
    capture: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run a program to completion. Returns the CompletedProcess (stdout/stderr as bytes)."""
    args = [str(a) for a in argv]
    log.debug("run: %s", format_argv(args))
    try:
        proc = subprocess.run(
            args,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            timeout=timeout,
            cwd=cwd,
            env=_environment(env),
            check=False,
        )
    except FileNotFoundError as exc:
        raise MissingCapability(f"{args[0]} is not installed", hint="run tools/setup") from exc
    except subprocess.TimeoutExpired as exc:
        raise HostError(
            f"{args[0]} did not finish within {timeout:.0f} s",
            hint=f"command was: {format_argv(args)}",
        ) from exc
    if check and proc.returncode != 0:
        stderr = (proc.stderr or b"").decode("utf-8", "replace")
        raise CommandFailed(args, proc.returncode, stderr)
    return proc


def run_text(argv: Sequence[StrPath], **kwargs: object) -> str:
    """Run a program and return its stdout decoded as UTF-8 (errors replaced)."""
    proc = run(argv, **kwargs)  # type: ignore[arg-type]
    return (proc.stdout or b"").decode("utf-8", "replace")


# Run in the child instead of Python code: after setpriv set the death signal, the shell
# checks that its parent is still the spawner (which may have died before the signal was
# armed) and only then execs the program.
_CHECK_PARENT = 'test "$PPID" = "$0" || exit 1; exec "$@"'


def _die_with_parent(args: list[str]) -> list[str]:
    """`args` wrapped so the kernel SIGKILLs the child when its parent dies.

    A long-lived child (QEMU) runs in its own session so Ctrl-C in the terminal does not hit
    it before we can tear it down in order; this makes sure it still dies if we are killed
    with SIGKILL and run no cleanup at all. util-linux setpriv sets the signal, so no Python
    runs in the forked child of a threaded process. (The signal fires when the spawning
    *thread* exits, so spawn from a thread that outlives the child's use, as QemuMachine does.)
    """
    setpriv = require_tool("setpriv", "util-linux")
    shell = require_tool("sh", "dash")
    return [
        setpriv,
        "--pdeathsig",
        "KILL",
        "--",
        shell,
        "-c",
        _CHECK_PARENT,
        str(os.getpid()),
        *args,
    ]


def spawn(
    argv: Sequence[StrPath],
    *,
    stdin: int = subprocess.DEVNULL,
    stdout: int | None = subprocess.PIPE,
    stderr: int | None = subprocess.STDOUT,
    cwd: StrPath | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-lived child (caller owns it and must reap it, see enginekit.qemu); its
    stdin is closed unless given (a terminal, see enginekit.console_mirror)."""
    args = [str(a) for a in argv]
    log.debug("spawn: %s", format_argv(args))
    if shutil.which(args[0]) is None:
        raise MissingCapability(f"{args[0]} is not installed", hint="run tools/setup")
    return subprocess.Popen(
        _die_with_parent(args),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        env=_environment(None),
        start_new_session=True,
    )


def is_root() -> bool:
    return os.geteuid() == 0


def which(name: str) -> Path | None:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    return Path(found) if found else None
