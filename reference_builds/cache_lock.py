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
sources, new packages) removes the entries it replaces once they are old enough that no
running session can still want them.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from enginekit.cache import cache_dir

T = TypeVar("T")
# An entry of another key may still be in use by a process that loaded other sources (a dev
# checkout changing under a running test session), so only entries this old go.
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


def remove_stale(directory: Path, pattern: str, keep: Path) -> None:
    """Remove the files in `directory` matching `pattern`, other than `keep`, that were last
    written over STALE_AFTER_SECONDS ago."""
    cutoff = time.time() - STALE_AFTER_SECONDS
    for stale in directory.glob(pattern):
        with contextlib.suppress(OSError):
            if stale != keep and stale.stat().st_mtime < cutoff:
                stale.unlink()
