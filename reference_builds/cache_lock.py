"""Building a cache entry once when several processes want it at the same moment.

A test session runs several xdist workers against one cache, and on a fresh machine they all
find it empty: without a lock each would download and unpack the same kernel into the same
directory, or write the same file, and one would trip over the other's half-made entry.
`built_once` looks for the entry, and only when it is missing takes an exclusive `flock` on
`<cache>/locks/<name>.lock`, looks again (another process may have built it meanwhile), and
builds it. The lock dies with its process, so a build killed halfway blocks nothing; each
build publishes its entry last (a rename or a final index file), so a half-made entry is
never found.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable
from typing import TypeVar

from enginekit.cache import cache_dir

T = TypeVar("T")


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
