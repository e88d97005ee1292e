"""Reference Engine ISOs, built once and cached for demos and tests.

`reference_iso("5.0.0")` returns the path of a hybrid ISO built from the reference payload.
The cached file is keyed by version, kernel release and a hash of the media package's source,
so a change to the builder (or a new kernel) rebuilds it; images for other keys are removed
once they are a day old. Parallel callers (pytest-xdist workers) serialise on a file lock; the
ISO itself appears by atomic rename. Callers must treat the returned file as read-only: copy
it before changing a byte.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import tempfile
import time
from pathlib import Path

from enginekit.cache import cache_dir
from enginekit.kernel import fetch_kernel
from enginekit.versions import reference_build

log = logging.getLogger(__name__)

_MEDIA_DIR = Path(__file__).resolve().parent
STALE_AFTER_SECONDS = 24 * 3600


def source_hash() -> str:
    """SHA-256 over the media package's Python source (paths and contents), sorted.

    The USB writer (media/usb) does not shape the ISO, so its source is left out: editing it
    must not invalidate every cached reference medium.
    """
    digest = hashlib.sha256()
    for path in sorted(_MEDIA_DIR.rglob("*.py")):
        if path.relative_to(_MEDIA_DIR).parts[0] == "usb":
            continue
        digest.update(path.relative_to(_MEDIA_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def reference_iso_name(version: str, kernel_release: str) -> str:
    key = hashlib.sha256(f"{version}\0{kernel_release}\0{source_hash()}".encode()).hexdigest()
    return f"engine-{version}-{key[:16]}.iso"


def reference_iso(version: str) -> Path:
    """Path of the cached reference ISO for `version`, building it if missing or stale."""
    from media.iso_builder import build_iso
    from media.reference import write_reference_payload

    reference_build(version)  # a clear UserInputError for unknown versions
    kernel = fetch_kernel()
    root = cache_dir("media")
    target = root / reference_iso_name(version, kernel.release)
    if target.is_file():
        return target
    with open(root / f"engine-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():  # another worker built it while we waited
            return target
        log.info("building reference ISO %s", target.name)
        with tempfile.TemporaryDirectory(prefix="enginekit-ref-", dir=root) as tmp:
            payload = Path(tmp) / "payload"
            write_reference_payload(version, payload, kernel)
            build_iso(payload, target)
        # Other keys may still be in use by a process that loaded other sources (a dev
        # checkout changing under a running test session), so only old ones go.
        cutoff = time.time() - STALE_AFTER_SECONDS
        for stale in root.glob(f"engine-{version}-*.iso"):
            with contextlib.suppress(OSError):
                if stale != target and stale.stat().st_mtime < cutoff:
                    stale.unlink()
    return target
