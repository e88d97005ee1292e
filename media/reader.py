"""Read an Engine medium, an ISO image or a payload directory, through one interface.

`MediumReader.open(path)` gives the parsed manifest and lets callers read, stream and check
the medium's files by their manifest paths: the installer reads the EULA, keyboards and the
system payload with it, the verifier calls `verify_files`. ISOs are read with pycdlib through
Rock Ridge names, falling back to Joliet and then plain ISO 9660 names.
"""

from __future__ import annotations

import enum
import hashlib
import os
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from enginekit.errors import UserInputError
from media.errors import InvalidISO, InvalidManifest, VerificationFailed
from media.manifest import MANIFEST_PATH, Manifest, parse_manifest, path_problem
from media.payload_tree import CHUNK, load_tree_manifest

# What pycdlib may raise on a file that is not (quite) an ISO: its own errors, and the
# struct/OS/decoding errors that escape it on garbage or short reads.
_ISO_READ_ERRORS = (
    PyCdlibException,
    struct.error,
    OSError,
    ValueError,
    IndexError,
    KeyError,
    AttributeError,
    TypeError,
    UnicodeError,
    RecursionError,
)

Progress = Callable[[int], None]
Extents = tuple[tuple[int, int], ...]  # (byte offset in the image, length) of each extent


class Problem(enum.StrEnum):
    MISSING = "missing"
    SIZE = "size"
    SHA256 = "sha256"


@dataclass(frozen=True)
class FileProblem:
    """A manifest entry the medium does not match. Sizes are decimal, sums lower-case hex."""

    path: str
    problem: Problem
    expected: str
    actual: str | None  # None when the file is missing

    def describe(self) -> str:
        if self.problem is Problem.MISSING:
            return f"{self.path}: missing"
        if self.problem is Problem.SIZE:
            return f"{self.path}: size is {self.actual} bytes, manifest says {self.expected}"
        return f"{self.path}: sha256 is {self.actual}, manifest says {self.expected}"


def check_medium_kind(path: Path, *, directory: bool = True) -> None:
    """Refuse, before anything opens it, a `path` that is missing or no kind of medium: only
    an ISO file, a block device or (when `directory`) a payload directory is one. A FIFO
    would block the open until a writer came; a character device is no medium."""
    try:
        mode = path.stat().st_mode
    except OSError:  # as Path.exists() has it: whatever cannot be stat'ed is not there
        raise UserInputError(f"{path}: no such file", hint="check the path of the medium") from None
    if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode) or (directory and stat.S_ISDIR(mode))):
        raise UserInputError(
            f"{path}: not an ISO file, a block device or a payload directory",
            hint="give the path of an Engine installer ISO",
        )


class ByteSink(Protocol):
    """Where `copy_to` streams a file: an open binary file, or anything with write()."""

    def write(self, data: bytes, /) -> object: ...


class MediumReader:
    """A medium opened for reading. Use `MediumReader.open(path)` as a context manager."""

    kind = "medium"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._manifest: Manifest | None = None

    # --- construction ---------------------------------------------------------------------

    @staticmethod
    def open(path: Path | str) -> MediumReader:
        """Open an ISO file (or block device) or a payload directory and parse its manifest."""
        path = Path(path)
        check_medium_kind(path)
        reader: MediumReader = DirectoryMedium(path) if path.is_dir() else IsoMedium(path)
        try:
            reader._load_manifest()
        except BaseException:
            reader.close()
            raise
        return reader

    def __enter__(self) -> MediumReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the medium (closes the ISO file). Safe to call twice."""

    # --- what callers use -----------------------------------------------------------------

    @property
    def manifest(self) -> Manifest:
        assert self._manifest is not None, "MediumReader.open() loads the manifest"
        return self._manifest

    def exists(self, path: str) -> bool:
        """True when `path` (relative, like in the manifest) is a file on the medium."""
        return self.size(self._checked(path)) is not None

    def size(self, path: str) -> int | None:
        """Size in bytes of the file at `path`, or None when there is no such file."""
        raise NotImplementedError

    def read_bytes(self, path: str) -> bytes:
        """The whole file at `path`. For large files prefer `copy_to`."""
        chunks: list[bytes] = []
        self._stream(self._checked(path), chunks.append)
        return b"".join(chunks)

    def read_listed(self, path: str) -> bytes:
        """A small file the manifest lists, whole, checked against its entry (size and
        SHA-256): a damaged copy is an error naming the file, never bytes to act on."""
        entry = self.manifest.file(self._checked(path))
        if entry is None:
            raise self._no_such_file(path)
        data = self.read_bytes(path)
        if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise VerificationFailed(
                f"{self.path}: {path} does not match the medium's manifest",
                hint="the medium is damaged; write or burn it again, or run engine-media verify",
            )
        return data

    def copy_to(self, path: str, out: ByteSink, progress: Progress | None = None) -> int:
        """Stream the file at `path` into `out` in 1 MiB chunks; returns the bytes copied."""
        copied = 0

        def write(chunk: bytes) -> None:
            nonlocal copied
            out.write(chunk)
            copied += len(chunk)
            if progress is not None:
                progress(len(chunk))

        self._stream(self._checked(path), write)
        return copied

    def list_files(self) -> list[str]:
        """Every file on the medium (relative paths, sorted), listed or not."""
        raise NotImplementedError

    def verify_files(self, progress: Progress | None = None) -> list[FileProblem]:
        """Check every manifest entry's presence, size and SHA-256; return what differs.

        `progress` is called with the number of bytes hashed after each chunk.
        """
        problems: list[FileProblem] = []
        for entry in self.manifest.files:
            size = self.size(entry.path)
            if size is None:
                problems.append(FileProblem(entry.path, Problem.MISSING, str(entry.size), None))
                continue
            if size != entry.size:
                problems.append(FileProblem(entry.path, Problem.SIZE, str(entry.size), str(size)))
                continue
            hashed, sha = self._hash(entry.path, progress)
            if hashed != entry.size:
                problems.append(FileProblem(entry.path, Problem.SIZE, str(entry.size), str(hashed)))
            elif sha != entry.sha256:
                problems.append(FileProblem(entry.path, Problem.SHA256, entry.sha256, sha))
        return problems

    def _hash(self, path: str, progress: Progress | None) -> tuple[int, str]:
        digest = hashlib.sha256()
        hashed = 0

        def update(chunk: bytes) -> None:
            nonlocal hashed
            digest.update(chunk)
            hashed += len(chunk)
            if progress is not None:
                progress(len(chunk))

        self._stream(path, update)
        return hashed, digest.hexdigest()

    # --- for the two kinds of media -------------------------------------------------------

    def _load_manifest(self) -> None:
        raise NotImplementedError

    def _stream(self, path: str, sink: Callable[[bytes], Any]) -> None:
        """Feed the file's bytes to `sink` in chunks; an error if it is not there."""
        raise NotImplementedError

    def _checked(self, path: str) -> str:
        problem = path_problem(path)
        if problem:
            raise UserInputError(
                f"{path!r} {problem}", hint="paths on a medium look like engine/EULA.txt"
            )
        return path

    def _no_such_file(self, path: str) -> UserInputError:
        return UserInputError(
            f"{self.path}: {path}: no such file on the medium",
            hint="the medium is incomplete or not an Engine medium; run engine-media verify",
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path}>"


class DirectoryMedium(MediumReader):
    """A payload tree on disk (what `engine-media build --payload` takes)."""

    kind = "directory"

    def _load_manifest(self) -> None:
        self._manifest = load_tree_manifest(self.path)

    def _file(self, path: str) -> Path | None:
        full = self.path / path
        # A symbolic link inside the tree must not lead the reader outside of it.
        try:
            inside = full.resolve().is_relative_to(self.path.resolve())
        except OSError:
            return None
        return full if inside and full.is_file() else None

    def size(self, path: str) -> int | None:
        found = self._file(path)
        return found.stat().st_size if found else None

    def _stream(self, path: str, sink: Callable[[bytes], Any]) -> None:
        found = self._file(path)
        if found is None:
            raise self._no_such_file(path)
        with found.open("rb") as stream:
            while chunk := stream.read(CHUNK):
                sink(chunk)

    def list_files(self) -> list[str]:
        return sorted(
            p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()
        )


class Namespace(enum.StrEnum):
    """Which directory tree of the ISO names the files (pycdlib's keyword for it)."""

    ROCK_RIDGE = "rr_path"
    JOLIET = "joliet_path"
    ISO9660 = "iso_path"


class IsoMedium(MediumReader):
    """An ISO 9660 image (file or block device), read with pycdlib."""

    kind = "iso"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._iso: Any = None
        self._index: dict[str, Extents] = {}  # relative path -> where its bytes are
        self.namespace = Namespace.ISO9660

    def _not_an_iso(self, detail: str) -> InvalidISO:
        return InvalidISO(
            f"{self.path}: not an ISO 9660 image ({detail})",
            hint="give an Engine installer ISO, e.g. one built by 'engine-media build'",
        )

    def _load_manifest(self) -> None:
        iso = pycdlib.PyCdlib()
        check_medium_kind(self.path, directory=False)
        if not os.access(self.path, os.R_OK):
            raise UserInputError(
                f"{self.path}: permission denied", hint="make the file readable or run as root"
            )
        try:
            with self.path.open("rb") as probe:
                length = probe.seek(0, os.SEEK_END)
            iso.open(str(self.path))
        except _ISO_READ_ERRORS as exc:
            raise self._not_an_iso(_short(exc)) from None
        self._iso = iso
        try:
            volume = iso.pvd.space_size * iso.pvd.log_block_size
            if length < volume:
                raise self._not_an_iso(
                    f"truncated: the volume is {volume} bytes but the file has only {length}"
                )
            if iso.has_rock_ridge():
                self.namespace = Namespace.ROCK_RIDGE
            elif iso.has_joliet():
                self.namespace = Namespace.JOLIET
            self._index = self._build_index()
        except _ISO_READ_ERRORS as exc:
            raise self._not_an_iso(_short(exc)) from None
        if self._lookup(MANIFEST_PATH) is None:
            raise InvalidManifest(
                f"{self.path}: no /{MANIFEST_PATH} on the medium",
                hint="this ISO is not an Engine medium (or was built without a manifest)",
            )
        data = self.read_bytes(MANIFEST_PATH)
        self._manifest = parse_manifest(data, source=f"{self.path}:/{MANIFEST_PATH}")

    def _build_index(self) -> dict[str, Extents]:
        # A file over 4 GiB has several directory records (multi-extent, ISO 9660 6.5.1); its
        # bytes are all of their extents in order. pycdlib's Rock Ridge lookup finds only the
        # last record of such a file, so Rock Ridge names are walked via the ISO 9660 tree,
        # whose lookup starts at the first record.
        index: dict[str, Extents] = {}
        walk_key = "iso_path" if self.namespace is Namespace.ROCK_RIDGE else str(self.namespace)
        for dirpath, _dirs, files in self._iso.walk(**{walk_key: "/"}):
            for name in files:
                walked = dirpath.rstrip("/") + "/" + name
                record = self._iso.get_record(**{walk_key: walked})
                if record.is_symlink():
                    continue  # a medium carries plain files only; a link is no file on it
                extents = tuple(
                    (int(offset), int(length))
                    for offset, length in self._iso.get_file_byte_extents(**{walk_key: walked})
                )
                if self.namespace is Namespace.ROCK_RIDGE:
                    rel = self._iso.full_path_from_dirrecord(record, rockridge=True)
                else:
                    rel = "/".join(_plain_name(part, self.namespace) for part in walked.split("/"))
                index[rel.lstrip("/")] = extents
        return index

    def close(self) -> None:
        if self._iso is not None:
            iso, self._iso = self._iso, None
            try:
                iso.close()
            except _ISO_READ_ERRORS:
                pass  # closing a half-read image must not hide the error that got us here

    def _lookup(self, path: str) -> Extents | None:
        # Plain ISO 9660 names are upper case on disc, so the case the manifest uses is lost.
        if self.namespace is Namespace.ISO9660:
            path = path.lower()
        return self._index.get(path)

    def size(self, path: str) -> int | None:
        found = self._lookup(path)
        return None if found is None else sum(length for _, length in found)

    def list_files(self) -> list[str]:
        return sorted(self._index)

    def _stream(self, path: str, sink: Callable[[bytes], Any]) -> None:
        found = self._lookup(path)
        if found is None:
            raise self._no_such_file(path)
        remaining = sum(length for _, length in found)
        try:
            # Read the extents from the image itself: the bytes on the medium are what counts
            # (isolinux.bin's boot-info-table included), and pycdlib's file objects cover only
            # the first extent of a multi-extent file.
            with self.path.open("rb") as image:
                for offset, length in found:
                    image.seek(offset)
                    left = length
                    while left > 0:
                        chunk = image.read(min(CHUNK, left))
                        if not chunk:
                            break
                        left -= len(chunk)
                        remaining -= len(chunk)
                        sink(chunk)
                    if left:
                        break
        except _ISO_READ_ERRORS as exc:
            raise InvalidISO(
                f"{self.path}: {path}: cannot read ({_short(exc)})",
                hint="the image is damaged; rebuild or re-download it",
            ) from None
        if remaining:
            raise InvalidISO(
                f"{self.path}: {path}: ends {remaining} bytes early (truncated image)",
                hint="the image is damaged; rebuild or re-download it",
            )


def _plain_name(part: str, namespace: Namespace) -> str:
    """The name as the manifest writes it: no ';1' version, and lower case for ISO 9660."""
    if namespace is Namespace.ROCK_RIDGE:
        return part
    name = part.removesuffix(";1")
    if namespace is Namespace.ISO9660:
        name = name.removesuffix(".").lower()
    return name


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
