"""The system payload as the engine lays it down: which files, where, and proof they are intact.

Every file comes from the medium's manifest and is checked against its size and SHA-256 as it
is read; a file that differs is a medium failing verification. Every destination path is
checked to stay inside its partition: an absolute path, a `..`, an empty or `.` component, a
backslash or a control character is refused before anything is written.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

from enginekit.errors import UserInputError
from media.manifest import FileEntry, Manifest

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Files the engine writes itself; a payload may not smuggle its own version in.
RESERVED_SLOT_PATHS = frozenset({"/engine-release", "/boot/extlinux/extlinux.conf"})


class MediumRejected(UserInputError):
    """The medium fails verification or holds a payload the engine refuses to lay down."""


class Medium(Protocol):
    """What the engine needs of an opened medium (media.reader.MediumReader has these)."""

    @property
    def manifest(self) -> Manifest: ...

    def read_bytes(self, path: str) -> bytes: ...


@dataclass(frozen=True)
class SlotFile:
    """One payload file and where it goes inside a system slot."""

    source: str  # path on the medium
    dest: str  # absolute path inside the slot's filesystem
    size: int
    sha256: str


def safe_partition_path(relative: str, what: str) -> str:
    """`relative` as an absolute path inside a partition, or MediumRejected if it escapes."""
    problem = None
    if relative == "":
        problem = "is empty"
    elif relative.startswith("/"):
        problem = "is absolute"
    elif "\\" in relative or _CONTROL.search(relative):
        problem = "contains a backslash or a control character"
    else:
        parts = relative.split("/")
        if ".." in parts:
            problem = "escapes its partition"
        elif "" in parts or "." in parts:
            problem = "is not normalised"
    if problem is not None:
        raise MediumRejected(
            f"{what}: path {relative!r} {problem}; refusing to install it",
            hint="the medium is damaged or was not built by engine-media; use a good medium",
        )
    return "/" + relative


def slot_files(manifest: Manifest) -> tuple[SlotFile, ...]:
    """The files of `manifest.system.root`, each with its checked destination."""
    prefix = manifest.system.root.rstrip("/") + "/"
    files = []
    for entry in manifest.files:
        if not entry.path.startswith(prefix):
            continue
        dest = safe_partition_path(entry.path[len(prefix) :], f"manifest entry {entry.path}")
        if dest in RESERVED_SLOT_PATHS:
            raise MediumRejected(
                f"manifest entry {entry.path}: {dest} is written by the installer itself",
                hint="remove it from the payload",
            )
        files.append(SlotFile(entry.path, dest, entry.size, entry.sha256))
    return tuple(files)


def manifest_entry(manifest: Manifest, path: str) -> FileEntry:
    entry = manifest.file(path)
    if entry is None:
        raise MediumRejected(
            f"the medium's manifest does not list {path}",
            hint="the medium is damaged; rebuild or re-download it",
        )
    return entry


def read_verified(medium: Medium, path: str, size: int, sha256: str) -> bytes:
    """The bytes of `path` on the medium, refused unless they match the manifest."""
    try:
        data = medium.read_bytes(path)
    except UserInputError as exc:
        raise MediumRejected(f"the medium fails verification: {exc.message}", exc.hint) from None
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
        raise MediumRejected(
            f"the medium fails verification: {path} does not match its manifest "
            f"(size {len(data)} vs {size}, or SHA-256 differs)",
            hint="the medium is damaged; rebuild or re-download it",
        )
    return data


def read_listed(medium: Medium, path: str) -> bytes:
    entry = manifest_entry(medium.manifest, path)
    return read_verified(medium, path, entry.size, entry.sha256)
