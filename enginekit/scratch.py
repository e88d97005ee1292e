"""Scratch files and directories that survive their owner being killed, and their sweep.

A process killed with SIGKILL runs no cleanup: its mounts die with its private mount
namespace and its loop devices autoclear, but the empty mount-point directories and scratch
files it made in $TMPDIR stay. Their names carry the owner's PID
(`enginekit-<kind>-<pid>-<random>`), so the next process sweeps the ones whose owner is dead;
scratch trees and files are also flocked by their owner, and a sweep leaves a locked one.
Directories are removed with rmdir only (never anything with files in it), except trees a
caller declared disposable (`scratch_tree`).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from enginekit.errors import HostError, UserInputError

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


def _crosses_a_mount(path: Path) -> bool:
    """Whether a directory below `path` is a mount point (or on another filesystem): a mount
    a killed run left in a shared namespace holds the user's filesystem, never ours to clean."""
    device = path.lstat().st_dev
    for root, dirs, _files in os.walk(path):
        for name in dirs:
            child = os.path.join(root, name)
            if os.path.islink(child):
                continue
            if os.path.ismount(child) or os.lstat(child).st_dev != device:
                return True
    return False


def _remove_empty_tree(path: Path) -> None:
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            _remove_empty_tree(child)
    path.rmdir()


def _stale_pattern(kind: str) -> re.Pattern[str]:
    # mkdtemp/NamedTemporaryFile add 8 characters of [a-z0-9_] after our prefix.
    return re.compile(re.escape(f"enginekit-{kind}-") + r"(\d+)-[A-Za-z0-9_]{8}")


def sweep_stale(kind: str, parent: Path | None = None, *, disposable: bool = False) -> int:
    """Remove scratch entries of `kind` left by dead processes; return how many went.

    Only exact `enginekit-<kind>-<pid>-<random>` names count. Directories go only when
    empty, unless `disposable` says their contents are our own scratch copies (never user
    data) and may be deleted with them; a tree with a mount point inside is always left.
    """
    base = Path(parent or tempfile.gettempdir())
    pattern = _stale_pattern(kind)
    removed = 0
    try:
        names = os.listdir(base)
    except OSError:
        return 0
    for name in names:
        match = pattern.fullmatch(name)
        if match is None or owner_alive(int(match.group(1))):
            continue
        entry = base / name
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:  # a symbolic link, or gone
            fd = None
        try:
            if fd is not None:
                # A live owner (maybe in another PID namespace) holds its tree's or file's
                # flock; the lock is held while we remove the entry.
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if entry.is_dir() and not entry.is_symlink():
                if _crosses_a_mount(entry):
                    log.debug("left stale %s: a mount point inside", entry)
                    continue
                if disposable:
                    shutil.rmtree(entry)
                else:
                    _remove_empty_tree(entry)
            else:
                entry.unlink()
            removed += 1
        except OSError as exc:  # locked, not empty, still mounted, raced: leave it alone
            log.debug("left stale %s: %s", entry, exc.strerror)
        finally:
            if fd is not None:
                os.close(fd)
    return removed


def _hold(path: Path) -> int | None:
    """flock `path` (a new scratch dir or file) so sweeps leave it while we live; None if a
    sweep removed it before we got the lock."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.lstat(path).st_ino == os.fstat(fd).st_ino:
            return fd
    except FileNotFoundError:
        pass
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def scratch_dir(kind: str, parent: Path | None = None) -> Path:
    """A new directory `enginekit-<kind>-<pid>-*`, after sweeping dead owners' ones."""
    sweep_stale(kind, parent)
    return Path(tempfile.mkdtemp(prefix=f"enginekit-{kind}-{os.getpid()}-", dir=parent))


def scratch_file(kind: str) -> IO[bytes]:
    """A named temporary file (deleted on close) `enginekit-<kind>-<pid>-*`, flocked through
    its own descriptor so no sweep removes it while it is open."""
    sweep_stale(kind)
    while True:
        file = tempfile.NamedTemporaryFile(prefix=f"enginekit-{kind}-{os.getpid()}-")  # noqa: SIM115 - returned open
        fcntl.flock(file.fileno(), fcntl.LOCK_EX)
        if (
            os.path.exists(file.name)
            and os.stat(file.name).st_ino == os.fstat(file.fileno()).st_ino
        ):
            return file
        file.close()


@contextmanager
def scratch_tree(kind: str) -> Iterator[Path]:
    """A scratch directory for disposable copies, removed with its contents on exit; one a
    killed process left behind is removed by the next caller."""
    sweep_stale(kind, disposable=True)
    while True:
        path = Path(tempfile.mkdtemp(prefix=f"enginekit-{kind}-{os.getpid()}-"))
        lock = _hold(path)  # sweeps leave a held tree alone, whatever its PID looks like
        if lock is not None:
            break
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(lock)


# Partial output files (ISO, disk image) carry a name tag that is clearly ours plus the
# owner's PID and a random part; the owner holds a BSD flock on the file while it builds.
# The sweep removes only names that match exactly AND that it can lock: a live owner, even
# one in another PID namespace sharing the directory, keeps its lock; a killed one's is gone.
# (flock does not interact with the OFD byte-range locks of disk_lock and QEMU.)
PARTIAL_TAG = "enginekit-partial"


def _partial_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(re.escape(prefix) + r"(\d+)\.[A-Za-z0-9_]{8}")


def create_owned_partial(directory: Path, prefix: str) -> tuple[int, Path]:
    """Create `<directory>/<prefix><pid>.<random>` exclusively and flock it; return the
    read-write fd (keep it open while building: closing it gives up ownership) and path."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    while True:
        path = Path(directory) / f"{prefix}{os.getpid()}.{secrets.token_hex(4)}"
        try:
            fd = os.open(path, flags, 0o644)
        except FileExistsError:
            continue  # the random name was taken: draw another
        except (PermissionError, IsADirectoryError, NotADirectoryError, FileNotFoundError) as exc:
            # The output's directory is the user's choice: one that is read-only, missing
            # or not a directory is bad input, not a bug.
            raise UserInputError(
                f"{directory}: cannot create the output there: {exc.strerror}",
                hint="write the output into a directory you may write to",
            ) from None
        except OSError as exc:
            if exc.errno != errno.EROFS:
                raise HostError(
                    f"{directory}: cannot create the output there: {exc.strerror}",
                    hint="check the free space and the filesystem of the output's directory",
                ) from None
            raise UserInputError(
                f"{directory}: cannot create the output there: {exc.strerror}",
                hint="write the output into a directory on a writable filesystem",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # A sweep may have locked and unlinked the new file before our flock: retry.
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd, path
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def sweep_owned_partials(directory: Path, prefix: str) -> int:
    """Remove partials `<prefix><pid>.<random>` in `directory` no process holds locked (their
    owner died); return how many went. Other names, and locked files, stay."""
    pattern = _partial_pattern(prefix)
    removed = 0
    try:
        names = [n for n in os.listdir(directory) if pattern.fullmatch(n)]
    except OSError:
        return 0
    for name in names:
        path = Path(directory) / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = os.fstat(fd)
            current = os.lstat(path)
            if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino) and (
                stat.S_ISREG(held.st_mode)
            ):
                path.unlink()
                removed += 1
        except OSError as exc:  # locked by its live owner, or raced: leave it
            log.debug("left partial %s: %s", path, exc.strerror)
        finally:
            os.close(fd)
    return removed
