"""Reference payloads for 4.0.0, 4.5.0 and 5.0.0: the DESIGN.md layout, a valid manifest
matching REFERENCE_BUILDS, and byte-for-byte determinism for the same kernel."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from enginekit.errors import UserInputError
from media.manifest import MANIFEST_PATH, parse_manifest
from media.payload_tree import check_payload_tree
from reference_builds.builds import REFERENCE_BUILDS
from reference_builds.kernel import Kernel
from reference_builds.live_initramfs import live_image_for
from reference_builds.payload import write_reference_payload

REQUIRED_KEYBOARDS = {"us", "uk", "de", "fr", "es", "it", "jp"}


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("version", sorted(REFERENCE_BUILDS))
def test_reference_payload_is_valid_and_deterministic(
    version: str, tmp_path: Path, kernel: Kernel
) -> None:
    build = REFERENCE_BUILDS[version]
    first = tmp_path / "one"
    manifest = write_reference_payload(version, first, kernel=kernel)

    # The layout DESIGN.md promises, and nothing else.
    pv_tar = f"system/root/usr/share/engine/pv-drivers/pv-drivers-{build.pv_drivers}.tar"
    assert set(tree_bytes(first)) == {
        "boot/vmlinuz",
        "boot/initrd.img",
        MANIFEST_PATH,
        "engine/EULA.txt",
        "engine/keyboards.json",
        "system/vmlinuz",
        "system/initrd.img",
        "system/root/usr/lib/engine/engined",
        "system/root/etc/engine/defaults.json",
        pv_tar,
    }
    assert check_payload_tree(first) == manifest
    assert parse_manifest((first / MANIFEST_PATH).read_bytes()) == manifest

    assert manifest.product == "Engine"
    assert manifest.version == build.version
    assert tuple(str(v) for v in manifest.upgrade_from) == build.upgrade_from
    assert str(manifest.pv_drivers) == build.pv_drivers
    assert manifest.layout is build.layout
    assert manifest.eula == "engine/EULA.txt"
    assert manifest.system.root == "system/root"

    # The medium boots the live installer; the installed Engine boots the same kernel image
    # with its own busybox init.
    live = live_image_for(version)
    assert (first / "boot/vmlinuz").read_bytes() == live.kernel.vmlinuz.read_bytes()
    assert (first / "boot/initrd.img").read_bytes() == live.initrd.read_bytes()
    assert (first / "system/vmlinuz").read_bytes() == kernel.vmlinuz.read_bytes()

    keyboards = json.loads((first / "engine/keyboards.json").read_text())
    assert REQUIRED_KEYBOARDS <= set(keyboards)
    assert list(manifest.keyboards) == list(keyboards)
    assert all(isinstance(name, str) and name for name in keyboards.values())

    eula = (first / "engine/EULA.txt").read_text()
    assert f"ENGINE {version} END-USER LICENCE AGREEMENT" in eula
    assert eula.count("\n\n") >= 3  # a few paragraphs

    engine_init = _member(first / "system/initrd.img", "init").decode()
    assert "ENGINE RUNNING version=$version slot=$slot vms=$vms" in engine_init

    engined = (first / "system/root/usr/lib/engine/engined").read_text()
    assert version in engined
    with tarfile.open(first / pv_tar) as tar:
        names = tar.getnames()
        assert f"pv-drivers-{build.pv_drivers}/VERSION" in names
    assert 4096 <= (first / pv_tar).stat().st_size <= 64 * 1024
    defaults = json.loads((first / "system/root/etc/engine/defaults.json").read_text())
    assert defaults["pv_drivers"] == build.pv_drivers

    second = tmp_path / "two"
    assert write_reference_payload(version, second, kernel=kernel) == manifest
    assert tree_bytes(second) == tree_bytes(first)


def test_versions_differ_where_they_should(tmp_path: Path, kernel: Kernel) -> None:
    old = write_reference_payload("4.0.0", tmp_path / "a", kernel=kernel)
    new = write_reference_payload("5.0.0", tmp_path / "b", kernel=kernel)
    old_files = {f.path: f.sha256 for f in old.files}
    new_files = {f.path: f.sha256 for f in new.files}
    # Same kernels and the same version-independent system init ...
    for same in ("boot/vmlinuz", "system/vmlinuz", "system/initrd.img"):
        assert old_files[same] == new_files[same]
    # ... but a different installer init, licence and system files.
    for differs in ("boot/initrd.img", "engine/EULA.txt", "system/root/usr/lib/engine/engined"):
        assert old_files[differs] != new_files[differs]
    assert str(old.layout) == "mbr"
    assert str(new.layout) == "gpt-ab"


def test_unknown_version_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UserInputError) as caught:
        write_reference_payload("4.2.0", tmp_path / "x")
    assert "4.2.0" in caught.value.message
    assert caught.value.hint is not None
    for known in REFERENCE_BUILDS:
        assert known in caught.value.hint
    assert not (tmp_path / "x").exists()


def test_a_non_empty_destination_is_refused(tmp_path: Path, kernel: Kernel) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(UserInputError, match="not an empty directory"):
        write_reference_payload("5.0.0", tmp_path, kernel=kernel)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def _member(initrd: Path, name: str) -> bytes:
    """One member of a gzip'd newc archive, parsed independently of the writer."""
    data = gzip.decompress(initrd.read_bytes())
    stream = io.BytesIO(data)
    while True:
        header = stream.read(110)
        assert header[:6] == b"070701"
        fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        filesize, namesize = fields[6], fields[11]
        member = stream.read(namesize)[:-1].decode()
        stream.read(-(110 + namesize) % 4)
        body = stream.read(filesize)
        stream.read(-filesize % 4)
        if member == name:
            return body
        assert member != "TRAILER!!!", f"{name} not in {initrd}"
