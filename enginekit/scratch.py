"""Scratch files and directories that survive their owner being killed, and their sweep.

A process killed with SIGKILL runs no cleanup: its mounts die with its private mount
namespace and its loop devices autoclear, but the empty mount-point directories and scratch
files it made in $TMPDIR stay. Their names carry the owner's PID
(`enginekit-<kind>-<pid>-<random>`), so the next process sweeps the ones whose owner is dead.
Directories are removed with rmdir only (never anything with files in it), except trees a
caller declared disposable (`scratch_tree`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)


def owner_alive(pid: int) -> bool:
    """Whether a process with this PID exists (a scratch entry's owner, for sweeps)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_empty_tree(path: Path) -> None:
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            _remove_empty_tree(child)
    path.rmdir()


def sweep_stale(kind: str, parent: Path | None = None, *, disposable: bool = False) -> int:
    """Remove scratch entries of `kind` left by dead processes; return how many went.

    Directories go only when empty, unless `disposable` says their contents are our own
    scratch copies (never user data) and may be deleted with them.
    """
    base = Path(parent or tempfile.gettempdir())
    removed = 0
    for entry in base.glob(f"enginekit-{kind}-*-*"):
        pid_text = entry.name.removeprefix(f"enginekit-{kind}-").split("-", 1)[0]
        if not pid_text.isdigit() or owner_alive(int(pid_text)):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                if disposable:
                    shutil.rmtree(entry)
                else:
                    _remove_empty_tree(entry)
            else:
                entry.unlink()
            removed += 1
        except OSError as exc:  # not empty, still mounted, raced: leave it alone
            log.debug("left stale %s: %s", entry, exc.strerror)
    return removed


def scratch_dir(kind: str, parent: Path | None = None) -> Path:
    """A new directory `enginekit-<kind>-<pid>-*`, after sweeping dead owners' ones."""
    sweep_stale(kind, parent)
    return Path(tempfile.mkdtemp(prefix=f"enginekit-{kind}-{os.getpid()}-", dir=parent))


def scratch_file(kind: str) -> IO[bytes]:
    """A named temporary file (deleted on close) `enginekit-<kind>-<pid>-*`."""
    sweep_stale(kind)
    return tempfile.NamedTemporaryFile(prefix=f"enginekit-{kind}-{os.getpid()}-")


@contextmanager
def scratch_tree(kind: str) -> Iterator[Path]:
    """A scratch directory for disposable copies, removed with its contents on exit; one a
    killed process left behind is removed by the next caller."""
    sweep_stale(kind, disposable=True)
    path = Path(tempfile.mkdtemp(prefix=f"enginekit-{kind}-{os.getpid()}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
