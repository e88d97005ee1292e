"""Fixtures for the ISO tests: the cached reference ISO, private copies of it, and small
synthetic payload trees that build in a fraction of a second.

The reference 5.0.0 ISO comes from `reference_builds.media` (built once, cached, safe under
pytest-xdist); tests that change bytes work on a copy in their own tmp_path.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
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
