"""Where downloaded and generated artefacts live between runs (kernels, reference media).

The cache is `$ENGINEKIT_CACHE`, else `$XDG_CACHE_HOME/enginekit`, else `~/.cache/enginekit`.
Nothing in it is ever committed; everything in it can be rebuilt.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    root = os.environ.get("ENGINEKIT_CACHE")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "enginekit"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
