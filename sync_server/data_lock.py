"""One server per data directory: `engine-sync serve` holds an exclusive lock on
`DIR/serve.lock` for as long as it runs.

Two servers over one directory would each run the FileImport scan and the import tasks, and
write the same kit files and admin token; over one SQLite database each would believe its
own view. The lock is `flock(2)`, so it goes away with the process, even after SIGKILL, and a
lock file left behind by a dead server blocks nothing. The file holds the owner's pid, for
the message.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from enginekit.errors import UserInputError

LOCK_NAME = "serve.lock"


@contextmanager
def hold_data_dir(data: Path) -> Iterator[None]:
    """Hold `data`'s lock for the body; refuse at once when another server holds it."""
    path = data / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise UserInputError(
                f"--data {data}: another engine-sync serve uses this directory (pid {owner})",
                hint="stop that server first, or give this one its own --data directory",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
