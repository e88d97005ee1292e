"""Hand a file to a tool that reads meaning into file names, as exactly that file.

e2fsprogs reads `NAME?options` (`debugfs 'disk?offset=0'` opens `disk`) and mtools reads
`NAME@@offset` (`mlabel -i 'disk@@0'` labels `disk`): a user's file whose name holds such a
marker would make the tool act on another file. `plain_name` yields a name with no syntax in
it for the same file: the path itself when it holds no marker, otherwise
`/proc/<our pid>/fd/<n>` of a descriptor held for the body (the tool reopens the very inode).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

MARKERS = ("?", "@@")  # e2fsprogs io options, mtools offset


@contextmanager
def plain_name(path: str | os.PathLike[str]) -> Iterator[str]:
    """A name for `path` that e2fsprogs and mtools take literally, valid inside the body."""
    text = os.fspath(path)
    if not any(marker in text for marker in MARKERS):
        yield text
        return
    fd = os.open(text, os.O_PATH | os.O_CLOEXEC)
    try:
        yield f"/proc/{os.getpid()}/fd/{fd}"
    finally:
        os.close(fd)
