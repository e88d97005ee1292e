"""Tools that read syntax into file names get a plain name: a disk called `victim?offset=0`
(e2fsprogs options) or `victim@@0` (an mtools offset) is read and written as that file, and
its namesake `victim` is never touched. Real debugfs, real mtools."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from disk_images.partition_files import FatFiles
from disk_images.probe import Installation, probe
from enginekit.process import require_tool, run
from reference_builds.pytest_plugin import EngineDiskFactory


def _fat(path: Path) -> Path:
    with open(path, "wb") as handle:
        handle.truncate(32 * 1024**2)
    run([require_tool("mkfs.vfat", "dosfstools"), "-n", "ESP", str(path)])
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("suffix", ["@@0", "@@1M?x"])
def test_fat_writes_go_to_the_file_named(tmp_path: Path, suffix: str) -> None:
    victim = _fat(tmp_path / "victim")
    odd = _fat(tmp_path / f"victim{suffix}")
    before = _digest(victim)
    FatFiles(odd).makedirs("/loader")
    FatFiles(odd).write_atomic("/loader/note.txt", b"for the odd one\n")
    assert FatFiles(odd).read("/loader/note.txt") == b"for the odd one\n"
    assert not FatFiles(victim).exists("/loader/note.txt")
    assert _digest(victim) == before


@pytest.mark.root
def test_the_probe_reads_the_disk_named(engine_disk: EngineDiskFactory, tmp_path: Path) -> None:
    disk = engine_disk("5.0.0", size="1G", with_vms=False, name="victim?offset=0@@0")
    victim = tmp_path / "victim"
    victim.touch()
    os.truncate(victim, disk.stat().st_size)
    found = probe(disk)
    assert isinstance(found, Installation), found
    assert found.version == "5.0.0"
