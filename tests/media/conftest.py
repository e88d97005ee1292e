"""Fixtures for the ISO tests: the cached reference ISO, private copies of it, and small
synthetic payload trees that build in a fraction of a second.

The reference 5.0.0 ISO comes from `reference_builds.media` (built once, cached, safe under
pytest-xdist); tests that change bytes work on a copy in their own tmp_path.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from media.payload_tree import manifest_for_tree, write_manifest

SmallPayload = Callable[..., Path]


@pytest.fixture(scope="session")
def reference_iso_5() -> Path:
    """The cached reference Engine 5.0.0 ISO. Read-only: copy it before changing it."""
    from reference_builds.media import reference_iso

    return reference_iso("5.0.0")


@pytest.fixture
def reference_iso_copy(reference_iso_5: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the reference ISO."""
    target = tmp_path / "engine-5.0.0.iso"
    shutil.copyfile(reference_iso_5, target)
    return target


def write_small_payload(
    root: Path, files: dict[str, bytes] | None = None, version: str = "5.0.0"
) -> Path:
    """A minimal payload tree (fake kernel and initrd: it builds, it does not boot)."""
    base = {
        "boot/vmlinuz": b"not a kernel\n",
        "boot/initrd.img": b"not an initrd\n",
        "engine/EULA.txt": b"You agree.\n",
        "engine/keyboards.json": b'{"us": "English (US)"}\n',
        "system/vmlinuz": b"k\n",
        "system/initrd.img": b"i\n",
        "system/root/engine-release": b"{}\n",
    }
    base.update(files or {})
    for rel, data in base.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    manifest = manifest_for_tree(
        root,
        version=version,
        upgrade_from=["4.5.0"],
        pv_drivers=version,
        layout="gpt-ab",
        keyboards=["us"],
    )
    write_manifest(root, manifest)
    return root


@pytest.fixture
def small_payload(tmp_path: Path) -> SmallPayload:
    """Factory: small_payload(files=..., version=...) -> a payload dir under tmp_path."""
    counter = iter(range(1000))

    def make(files: dict[str, bytes] | None = None, version: str = "5.0.0") -> Path:
        return write_small_payload(tmp_path / f"payload{next(counter)}", files, version)

    return make


@dataclass(frozen=True)
class BlockNode:
    """A block device node in a test's tmp_path (`path`) for a loop device the test holds."""

    path: Path
    rdev: int
    backing: Path


@pytest.fixture
def block_node(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlockNode]:
    """`tmp_path/fakeblk`: a block device node for a loop device attached (and held) for this
    test alone, over a zeroed 1 MiB file outside tmp_path. Code that wrongly opens the node
    reaches our own file, never a device of the machine or of another test."""
    from disk_images.loop import LoopDevice

    backing = tmp_path_factory.mktemp("block-node") / "backing.img"
    backing.write_bytes(bytes(1 << 20))
    with LoopDevice(backing) as loop:
        rdev = os.stat(loop.device).st_rdev
        node = tmp_path / "fakeblk"
        os.mknod(node, 0o600 | stat.S_IFBLK, rdev)
        yield BlockNode(node, rdev, backing)
