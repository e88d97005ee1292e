"""pytest plugin (entry point `pytest11`): fixtures for users' own Engine upgrade tests.

`engine_disk(version="4.5.0", size="2G")` returns the path of a fresh reference disk image (a
real installation made by the installer, with the four sample VMs) in the test's `tmp_path`.
The first request for a (version, size) in a session builds a pristine image once; every
request copies it with `cp --sparse=always --reflink=auto`, so a test may change its disk at
will and the next one still starts clean. `engine_medium(version)` returns the cached reference
ISO (read-only: copy it before changing a byte). `vm_disk_digests(image)` and
`sparse_digest(path)` let a test prove an upgrade left VM disks and images alone. Disks need
root for loop devices. Only a capability this machine lacks (`MissingCapability`: a tool not
installed, no firmware) skips the requesting test, with the reason; a tool that is there and
fails (`CommandFailed`) fails it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from enginekit.errors import MissingCapability
from enginekit.process import run

_CHUNK = 1024 * 1024
EngineDiskFactory = Callable[..., Path]
EngineMediumFactory = Callable[[str], Path]


class PristineDisks:
    """One pristine reference disk per (version, size, with_vms) for the whole session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._made: dict[tuple[str, str, bool], Path] = {}

    def get(self, version: str, size: str, with_vms: bool) -> Path:
        key = (version, size, with_vms)
        if key in self._made:
            return self._made[key]
        from reference_builds.disk import create_reference_disk

        name = f"engine-{version}-{size}{'' if with_vms else '-novms'}.img"
        path = self.root / name
        with open(self.root / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not path.exists():
                partial = self.root / f"{name}.partial"
                partial.unlink(missing_ok=True)
                create_reference_disk(partial, version, size, with_vms=with_vms)
                partial.rename(path)
        self._made[key] = path
        return path


def sparse_digest(path: Path) -> str:
    """SHA-256 over a file's length, hole map and data; fast on large sparse images.

    Two files with the same digest have the same bytes (holes read as zeros either way)."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        end = os.fstat(fd).st_size
        digest.update(f"size={end};".encode())
        position = 0
        while position < end:
            try:
                data = os.lseek(fd, position, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole remains
                break
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            os.lseek(fd, data, os.SEEK_SET)
            remaining = hole - data
            while remaining > 0:
                chunk = os.read(fd, min(_CHUNK, remaining))
                if not chunk:
                    break
                # Zero blocks inside a data extent hash like a hole of the same length.
                if chunk.count(0) != len(chunk):
                    digest.update(f"@{data + (hole - data - remaining)};".encode())
                    digest.update(chunk)
                remaining -= len(chunk)
            position = hole
    finally:
        os.close(fd)
    return digest.hexdigest()


def vm_disk_digests(image: Path) -> dict[str, str]:
    """`sparse_digest` of every VM's disk.img on the Engine disk `image` (mounted read-only)."""
    from disk_images.layout import VMS_DIR, PartitionRole
    from disk_images.session import open_installation

    digests: dict[str, str] = {}
    with open_installation(image, writable=False) as session:
        root = session.mountpoint(PartitionRole.STORAGE) / VMS_DIR.lstrip("/")
        for vm_dir in sorted(root.iterdir()) if root.is_dir() else []:
            disk = vm_dir / "disk.img"
            if disk.is_file():
                digests[vm_dir.name] = sparse_digest(disk)
    return digests


def copy_sparse(source: Path, dest: Path) -> Path:
    """A copy of a disk image that keeps its holes (and shares blocks where reflink works)."""
    run(["cp", "--sparse=always", "--reflink=auto", str(source), str(dest)])
    return dest


@pytest.fixture(scope="session")
def enginekit_pristine_disks(tmp_path_factory: pytest.TempPathFactory) -> PristineDisks:
    return PristineDisks(tmp_path_factory.mktemp("enginekit-pristine"))


@pytest.fixture
def engine_disk(tmp_path: Path, enginekit_pristine_disks: PristineDisks) -> EngineDiskFactory:
    """Factory: `engine_disk("4.5.0", size="2G", with_vms=True, name=None) -> Path`."""
    counter = 0

    def make(
        version: str = "4.5.0", size: str = "2G", with_vms: bool = True, name: str | None = None
    ) -> Path:
        nonlocal counter
        counter += 1
        try:
            pristine = enginekit_pristine_disks.get(version, size, with_vms)
        except MissingCapability as exc:
            pytest.skip(f"cannot build a reference Engine disk here: {exc.message}")
        dest = tmp_path / (name or f"engine-{version}-{counter}.img")
        return copy_sparse(pristine, dest)

    return make


@pytest.fixture
def engine_medium() -> EngineMediumFactory:
    """Factory: `engine_medium("5.0.0") -> Path` of the cached reference ISO (do not modify)."""

    def get(version: str) -> Path:
        from reference_builds.media import reference_iso

        try:
            return reference_iso(version)
        except MissingCapability as exc:
            pytest.skip(f"cannot build the reference medium here: {exc.message}")

    return get
