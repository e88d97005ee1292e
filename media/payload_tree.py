"""A payload tree on disk, the directory `engine-media build --payload` takes: its files
listed (regular files only), hashed, turned into a validated manifest, and proved to still
match the manifest written into it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from enginekit.errors import UserInputError
from enginekit.versions import DiskLayout, EngineVersion
from media.errors import InvalidPayload
from media.manifest import (
    BUILDER_DIR,
    MANIFEST_PATH,
    PRODUCT,
    Manifest,
    SystemPayload,
    parse_manifest,
    path_problem,
)

CHUNK = 1024 * 1024


def hash_stream(stream: BinaryIO) -> tuple[int, str]:
    """(size, sha256 hex) of everything left in `stream`, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def hash_file(path: Path) -> tuple[int, str]:
    with path.open("rb") as stream:
        return hash_stream(stream)


def _excluded(rel: str) -> bool:
    return rel == MANIFEST_PATH or rel.split("/")[0] == BUILDER_DIR


def _check_readable(path: Path) -> None:
    """Open `path` for reading and close it: a file the build could not read is refused
    before any tool runs, naming the file (not a tool's complaint about a scratch copy)."""
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise InvalidPayload(
            f"{path}: cannot read it: {exc.strerror}",
            hint="make every file of the payload tree readable (chmod a+r), "
            "or run as a user who may read it",
        ) from None


def payload_files(root: Path) -> Iterator[str]:
    """Relative paths of the payload's regular files, sorted, without manifest and isolinux/.

    Symbolic links and special files are refused: a medium carries plain files only. So is
    a file that cannot be opened for reading.
    """
    if not root.is_dir():
        raise InvalidPayload(f"{root}: not a directory", hint="give the payload tree's top")
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        if base == root and BUILDER_DIR in dirnames:
            dirnames.remove(BUILDER_DIR)
        dirnames.sort()
        for name in sorted(dirnames):
            if (base / name).is_symlink():
                rel = (base / name).relative_to(root).as_posix()
                raise InvalidPayload(
                    f"{root}: {rel} is a symbolic link",
                    hint="copy the target into the tree instead",
                )
        for name in filenames:
            full = base / name
            rel = full.relative_to(root).as_posix()
            if _excluded(rel):
                continue
            mode = full.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise InvalidPayload(
                    f"{root}: {rel} is a symbolic link", hint="copy the target into the tree"
                )
            if not stat.S_ISREG(mode):
                raise InvalidPayload(
                    f"{root}: {rel} is not a regular file", hint="remove it from the payload"
                )
            problem = path_problem(rel)
            if problem:
                raise InvalidPayload(f"{root}: {rel!r} {problem}", hint="rename the file")
            _check_readable(full)
            found.append(rel)
    yield from sorted(found)


def manifest_for_tree(
    root: Path,
    *,
    product: str = PRODUCT,
    version: str | EngineVersion,
    upgrade_from: Iterable[str | EngineVersion] = (),
    pv_drivers: str | EngineVersion,
    layout: DiskLayout | str,
    keyboards: Sequence[str],
    eula: str = "engine/EULA.txt",
    system: SystemPayload | None = None,
) -> Manifest:
    """Walk the payload tree at `root` and build its (validated) manifest.

    Every regular file except `engine/manifest.json` and the builder's `isolinux/` is listed
    with its size and SHA-256. Raises `InvalidManifest` when the result breaks the schema
    (e.g. the EULA file is not in the tree).
    """
    entries = []
    for rel in payload_files(root):
        size, sha = hash_file(root / rel)
        entries.append({"path": rel, "size": size, "sha256": sha})
    system = system or SystemPayload("system/vmlinuz", "system/initrd.img", "system/root")
    doc = {
        "product": product,
        "version": str(version),
        "upgrade_from": [str(u) for u in upgrade_from],
        "pv_drivers": str(pv_drivers),
        "layout": str(layout),
        "eula": eula,
        "keyboards": list(keyboards),
        "system": {"kernel": system.kernel, "initrd": system.initrd, "root": system.root},
        "files": entries,
    }
    # Going through the parser means a generated manifest obeys exactly the rules we read by.
    return parse_manifest(json.dumps(doc).encode(), source=f"{root}/{MANIFEST_PATH}")


def write_manifest(root: Path, manifest: Manifest) -> Path:
    """Write `manifest` to `root/engine/manifest.json` and return that path."""
    target = root / MANIFEST_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(manifest.to_json())
    return target


def load_tree_manifest(root: Path) -> Manifest:
    """Parse `root/engine/manifest.json`, with `InvalidPayload` when there is none."""
    if not root.exists():
        raise UserInputError(
            f"{root}: no such file or directory",
            hint="give the payload tree's top directory, the one holding engine/manifest.json",
        )
    if not root.is_dir():
        raise InvalidPayload(f"{root}: not a directory", hint="give the payload tree's top")
    path = root / MANIFEST_PATH
    if not path.is_file():
        raise InvalidPayload(
            f"{root}: no {MANIFEST_PATH}",
            hint="a payload tree needs engine/manifest.json; generate one with "
            "media.payload_tree.manifest_for_tree or use a reference payload",
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidPayload(
            f"{path}: cannot read it: {exc.strerror}",
            hint="make the payload tree readable, or run as a user who may read it",
        ) from None
    return parse_manifest(data, source=str(path))


def check_payload_tree(root: Path) -> Manifest:
    """Load the tree's manifest and prove every listed file is there, same size and SHA-256.

    Files present in the tree but not listed are refused as well: the manifest must cover
    the whole payload. Raises one `InvalidPayload` naming every problem.
    """
    manifest = load_tree_manifest(root)
    problems: list[str] = []
    for entry in manifest.files:
        full = root / entry.path
        if not full.is_file() or full.is_symlink():
            problems.append(f"{entry.path}: missing")
            continue
        size = full.stat().st_size
        if size != entry.size:
            problems.append(f"{entry.path}: size is {size}, manifest says {entry.size}")
            continue
        _, sha = hash_file(full)
        if sha != entry.sha256:
            problems.append(f"{entry.path}: sha256 differs from the manifest (file changed)")
    listed = {e.path for e in manifest.files}
    for rel in payload_files(root):
        if rel not in listed:
            problems.append(f"{rel}: not listed in {MANIFEST_PATH}")
    if problems:
        shown = problems[:10]
        more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise InvalidPayload(
            f"{root}: " + "; ".join(shown) + more,
            hint="restore the files or regenerate the manifest from the tree",
        )
    return manifest
