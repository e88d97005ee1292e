"""Answers baked into a medium, and a medium built again around its own payload.

An unattended medium carries its answer file at `engine/answers.toml`, listed in the manifest
like every other file: the embedded MD5 and the per-file SHA-256 cover it, `verify` checks it,
and the boot menus and the hybrid layout are the builder's own, as for any build. The live
installer finds it on the medium it booted from.

`remaster` does what Fedora's mkksiso does for a kickstart: the payload is read out of the
ISO (every listed file, each checked against the manifest as it is copied), the answer file
is put in (or replaced), and the same builder writes a new ISO. The input is only read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

from media.errors import VerificationFailed
from media.manifest import ANSWERS_PATH, MANIFEST_PATH, FileEntry, Manifest, parse_manifest
from media.payload_tree import load_tree_manifest, write_manifest
from media.reader import MediumReader


class _HashingFile:
    """Where a medium's file is streamed: written out and hashed on the way."""

    def __init__(self, path: Path) -> None:
        self._out = path.open("xb")
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> int:
        self._out.write(chunk)
        self.digest.update(chunk)
        self.size += len(chunk)
        return len(chunk)

    def close(self) -> None:
        self._out.close()


def extract_payload(iso: Path, into: Path) -> Manifest:
    """Copy the payload of the medium at `iso` into the new directory `into`: the manifest
    and every file it lists (not what the builder adds: boot menus, the ESP image). A file
    that differs from its manifest entry stops the copy: a damaged medium is not rebuilt."""
    with MediumReader.open(iso) as reader:
        manifest = reader.manifest
        into.mkdir()
        for entry in manifest.files:
            target = into / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            sink = _HashingFile(target)
            try:
                reader.copy_to(entry.path, sink)
            finally:
                sink.close()
            if sink.size != entry.size or sink.digest.hexdigest() != entry.sha256:
                raise VerificationFailed(
                    f"{iso}: {entry.path} does not match the medium's manifest "
                    f"({sink.size} of {entry.size} bytes read, sha256 differs)",
                    hint="the medium is damaged; build or fetch it again (engine-media verify "
                    "says what else does not hold)",
                )
        write_manifest(into, manifest)
    return manifest


def copy_payload(payload: Path, into: Path) -> None:
    """A copy of the payload tree at `payload` in the new directory `into`, so that baking
    answers never writes into the user's tree (nor into a file hard-linked from it)."""
    shutil.copytree(payload, into, symlinks=True)


def put_answers(payload: Path, answers: bytes) -> Manifest:
    """Write `answers` to the payload's `engine/answers.toml` and list it in the manifest
    (replacing earlier answers): the manifest the payload then has."""
    manifest = load_tree_manifest(payload)
    target = payload / ANSWERS_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)  # a new file, never one linked from elsewhere
    target.write_bytes(answers)
    entry = FileEntry(ANSWERS_PATH, len(answers), hashlib.sha256(answers).hexdigest())
    files = sorted(
        (*(f for f in manifest.files if f.path != ANSWERS_PATH), entry), key=lambda f: f.path
    )
    changed = dataclasses.replace(manifest, files=tuple(files))
    # Through the parser, as every manifest we write: the result obeys the rules we read by.
    checked = parse_manifest(changed.to_json(), source=str(payload / MANIFEST_PATH))
    (payload / MANIFEST_PATH).unlink()
    write_manifest(payload, checked)
    return checked
