"""Reference Engine ISOs, built once and cached for demos and tests.

`reference_iso("5.0.0")` returns the path of a hybrid ISO built from the reference payload. The
cached file is keyed by version, kernel release, the live installer image (its initramfs name
carries a hash of its contents, EngineKit's code included) and a hash of the source of `media`
and `reference_builds`, so a change to the builder, the code it carries or a new kernel
rebuilds it; images for other
keys are removed once they are a day old. Parallel callers (pytest-xdist workers) serialise on
a file lock; the ISO itself appears by atomic rename. Callers must treat the returned file as
read-only: copy it before changing a byte.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path

from enginekit.cache import cache_dir
from reference_builds.builds import reference_build
from reference_builds.cache_lock import built_once, remove_stale, used
from reference_builds.kernel import fetch_kernel
from reference_builds.live_initramfs import LiveImage, live_image_for
from reference_builds.payload import InstallerImage

log = logging.getLogger(__name__)

_REFERENCE_DIR = Path(__file__).resolve().parent
# The sources that shape a reference ISO: the media package and this one.
_SOURCE_DIRS = (_REFERENCE_DIR.parent / "media", _REFERENCE_DIR)


def source_hash() -> str:
    """SHA-256 over the Python source of media and reference_builds (paths and contents).

    The USB writer (media/usb) and the pytest plugin do not shape the ISO, so their source is
    left out: editing them must not invalidate every cached reference medium.
    """
    digest = hashlib.sha256()
    for top in _SOURCE_DIRS:
        for path in sorted(top.rglob("*.py")):
            relative = path.relative_to(top.parent)
            if relative.parts[1] == "usb" or path.name in ("pytest_plugin.py", "disk.py"):
                continue
            digest.update(relative.as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def reference_iso_name(version: str, kernel_release: str, live: LiveImage | None) -> str:
    """The cache name; `live` None for a medium that boots the marker-only init."""
    boots = f"{live.kernel.release}\0{live.initrd.name}" if live else InstallerImage.MARKER
    key = f"{version}\0{kernel_release}\0{boots}\0{source_hash()}"
    key = hashlib.sha256(key.encode()).hexdigest()
    return f"engine-{version}-{key[:16]}.iso"


def reference_iso(version: str, installer: InstallerImage = InstallerImage.LIVE) -> Path:
    """Path of the cached reference ISO for `version`, building it if missing or stale.
    `installer=MARKER` gives the medium that boots only the marker-only init (see
    `InstallerImage`), for tests of boot plumbing."""
    from media.iso_builder import build_iso
    from reference_builds.payload import write_reference_payload

    reference_build(version)  # a clear UserInputError for unknown versions
    kernel = fetch_kernel()
    live = live_image_for(version) if installer is InstallerImage.LIVE else None
    root = cache_dir("media")
    target = root / reference_iso_name(version, kernel.release, live)

    def build() -> Path:
        log.info("building reference ISO %s", target.name)
        with tempfile.TemporaryDirectory(prefix="enginekit-ref-", dir=root) as tmp:
            payload = Path(tmp) / "payload"
            write_reference_payload(version, payload, kernel, live, installer)
            build_iso(payload, target)
        remove_stale(root, f"engine-{version}-*.iso", keep=target)
        return target

    return built_once(f"engine-{version}.iso", lambda: used(target), build)
