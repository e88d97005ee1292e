"""Import an Engine installer ISO as an "Engine Update" kit: copy it into the kit store with
its SHA-256, verify the copy with the media library (structure, El Torito, hybrid layout,
embedded MD5, manifest, every file; no boots), and only then name it a kit.

The copy is what gets verified, so the kit served to computers is byte for byte the file that
passed. The source may be a named pipe (an ISO streamed in as it arrives, e.g. from a
download): it is read once, to its end, and its copy is verified like any other.

A damaged or foreign ISO raises `KitRejected` with the first problem found, and the
partial copy is removed: there is never a kit for it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from enginekit.errors import EngineKitError, UserInputError
from media.reader import MediumReader
from media.verify import verify_iso

CHUNK = 1024 * 1024
# Share of the task's progress bar each phase takes.
COPY_SHARE = 0.4


class KitRejected(UserInputError):
    """The file is not a sound Engine update kit (damaged, foreign, or already imported)."""


class ImportCancelled(EngineKitError):
    """The task was cancelled; whatever it had copied is removed."""


@dataclass(frozen=True)
class ImportedKit:
    version: str
    upgrade_from: tuple[str, ...]
    layout: str
    size: int
    sha256: str
    path: Path


@dataclass(frozen=True)
class ImportControl:
    """How the running task reports progress (0..1) and learns it was cancelled."""

    progress: Callable[[float], None]
    cancelled: Callable[[], bool]

    def checkpoint(self, fraction: float) -> None:
        if self.cancelled():
            raise ImportCancelled(
                "the import was cancelled", hint="import the ISO again to make the kit"
            )
        self.progress(fraction)


def importable(path: Path) -> bool:
    """A regular file, or a named pipe to read the ISO from as it is written."""
    return path.is_file() or path.is_fifo()


def _copy_hashed(source: Path, dest: Path, control: ImportControl) -> tuple[int, str]:
    digest = hashlib.sha256()
    total = source.stat().st_size if source.is_file() else 0  # a pipe's size is unknown
    done = 0
    with source.open("rb") as src, dest.open("xb") as out:
        while chunk := src.read(CHUNK):
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            control.checkpoint(COPY_SHARE * done / total if total else 0.0)
        out.flush()
        os.fsync(out.fileno())
    return done, digest.hexdigest()


def import_kit(
    source: Path, kits_dir: Path, control: ImportControl, known_versions: Callable[[], set[str]]
) -> ImportedKit:
    """Copy, verify and publish `source` into `kits_dir`; see the module docstring."""
    if not importable(source):
        raise KitRejected(
            f"{source.name}: no such file to import",
            hint="give the path of an Engine installer ISO, or drop it into DIR/FileImport",
        )
    kits_dir.mkdir(parents=True, exist_ok=True)
    partial = kits_dir / f".import-{os.getpid()}-{os.urandom(4).hex()}.partial"
    try:
        size, sha256 = _copy_hashed(source, partial, control)
        steps = iter((0.5, 0.6, 0.7, 0.8))
        report = verify_iso(partial, boot=False, progress=lambda _: control.checkpoint(next(steps)))
        if not report.ok or report.version is None:
            problems = report.failures() or ["the manifest names no version"]
            raise KitRejected(
                f"{source.name}: not a sound Engine update kit: {problems[0]}",
                hint="rebuild or re-download the ISO and check it with engine-media verify",
            )
        with MediumReader.open(partial) as medium:
            manifest = medium.manifest
        control.checkpoint(0.95)
        version = str(manifest.version)
        if manifest.product != "Engine":
            raise KitRejected(
                f"{source.name}: the medium is {manifest.product!r}, not Engine",
                hint="import an Engine installer ISO as an Engine Update kit",
            )
        if version in known_versions():
            raise KitRejected(
                f"{source.name}: Engine {version} is already in the Software Library",
                hint="engine-sync kits lists the imported kits",
            )
        final = kits_dir / f"engine-{version}-{sha256[:12]}.iso"
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return ImportedKit(
        version=version,
        upgrade_from=tuple(str(v) for v in manifest.upgrade_from),
        layout=manifest.layout.value,
        size=size,
        sha256=sha256,
        path=final,
    )
