"""Building a cache entry once when several processes want it at the same moment.

A test session runs several xdist workers against one cache, and on a fresh machine they all
find it empty: without a lock each would download and unpack the same kernel into the same
directory, or write the same file, and one would trip over the other's half-made entry.
`built_once` looks for the entry, and only when it is missing takes an exclusive `flock` on
`<cache>/locks/<name>.lock`, looks again (another process may have built it meanwhile), and
builds it. The lock dies with its process, so a build killed halfway blocks nothing; each
build publishes its entry last (a rename or a final index file), so a half-made entry is
never found.

`remove_stale` is the other half of a cache entry's life: a build whose key changed (new
sources, new packages) removes the entries nothing has used for a day. Every lookup that
finds an entry marks it used (`used`, the file's mtime), so an entry a running session (or
another version's build) still takes is never one of them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from enginekit.cache import cache_dir

T = TypeVar("T")
# Entries not used for this long go when a new one is built beside them.
STALE_AFTER_SECONDS = 24 * 3600


def built_once(name: str, find: Callable[[], T | None], build: Callable[[], T]) -> T:
    """What `find` returns, else what `build` makes, with one builder at a time for `name`."""
    found = find()
    if found is not None:
        return found
    with open(cache_dir("locks") / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = find()
        if found is not None:
            return found
        return build()


def used(entry: Path) -> Path | None:
    """`entry` if it exists, marked as used now (for `remove_stale`); else None. The `find`
    of a `built_once` call."""
    try:
        os.utime(entry)
    except FileNotFoundError:
        return None
    except OSError:
        pass  # a cache shared read-only: the entry is still there to use
    return entry


def remove_stale(directory: Path, pattern: str, keep: Path) -> None:
    """Remove the files in `directory` matching `pattern`, other than `keep`, that nothing has
    used (`used`) or written for STALE_AFTER_SECONDS."""
    cutoff = time.time() - STALE_AFTER_SECONDS
    for stale in directory.glob(pattern):
        with contextlib.suppress(OSError):
            if stale != keep and stale.stat().st_mtime < cutoff:
                stale.unlink()
