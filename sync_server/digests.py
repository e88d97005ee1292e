"""The SHA-256 of a file, read in 1 MiB chunks: how a kit, a relayed kit, a downloaded kit
and a backup's members are checked."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1024 * 1024


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
