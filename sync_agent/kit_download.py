"""Fetch an assigned kit into the agent's cache: resumable (HTTP Range into
`<sha256>.partial`), checked against the kit's size and SHA-256 before it is renamed to
`<sha256>.iso`. A partial that turns out wrong is removed, so the next try starts clean.
Computers sharing a cache (several disks in one agent, or several agents) take turns per kit
through an flock on `<sha256>.lock`: the second finds the first one's finished file.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from enginekit.errors import EngineKitError
from sync_server.client import SyncClient
from sync_server.digests import file_sha256
from sync_server.schemas import UpdateOffer


class KitDownloadFailed(EngineKitError):
    """The downloaded kit is not the one the server described."""


def fetch_kit(client: SyncClient, offer: UpdateOffer, cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"{offer.sha256}.lock").open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        return _fetch_locked(client, offer, cache)


def _fetch_locked(client: SyncClient, offer: UpdateOffer, cache: Path) -> Path:
    final = cache / f"{offer.sha256}.iso"
    if final.is_file() and final.stat().st_size == offer.size:
        return final
    partial = cache / f"{offer.sha256}.partial"
    if partial.exists() and partial.stat().st_size > offer.size:
        partial.unlink()
    client.download(offer.download, partial)
    size = partial.stat().st_size
    if size != offer.size or file_sha256(partial) != offer.sha256:
        partial.unlink(missing_ok=True)
        raise KitDownloadFailed(
            f"the Engine {offer.version} kit downloaded does not match the server's sha256 "
            f"({size} of {offer.size} bytes)",
            hint="the partial download was removed; the next check-in downloads it again",
        )
    os.replace(partial, final)
    return final
