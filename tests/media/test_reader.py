"""MediumReader on payload trees and on ISOs made by an outside tool (xorriso) and by pycdlib
(Joliet-only and plain ISO 9660): reading, streaming, verifying, and every bad input as one
clear error."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pycdlib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enginekit.errors import UserInputError
from enginekit.process import require_tool, run
from enginekit.versions import DiskLayout
from media.errors import InvalidISO, InvalidManifest, InvalidPayload
from media.manifest import MANIFEST_PATH, Manifest
from media.payload_tree import manifest_for_tree, write_manifest
from media.reader import DirectoryMedium, FileProblem, IsoMedium, MediumReader, Problem

FILES = {
    "boot/vmlinuz": b"K" * 5000 + b"kernel-end",
    "boot/initrd.img": b"installer initrd",
    "engine/EULA.txt": b"ENGINE 5.0.0 END-USER LICENCE AGREEMENT\n",
    "engine/keyboards.json": b'{"us": "English (US)"}\n',
    "system/vmlinuz": b"K" * 5000 + b"kernel-end",
    "system/initrd.img": b"engine initrd",
    "system/root/usr/lib/engine/engined": b"#!/bin/sh\necho engined\n",
    "system/root/etc/engine/defaults.json": b"{}\n",
}


def make_payload(root: Path, files: dict[str, bytes] = FILES) -> Manifest:
    for rel, data in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    manifest = manifest_for_tree(
        root, version="5.0.0", upgrade_from=["4.5.0"], pv_drivers="5.0.0",
        layout=DiskLayout.GPT_AB, keyboards=["us"],
    )  # fmt: skip
    write_manifest(root, manifest)
    return manifest


def xorriso_iso(tree: Path, out: Path) -> Path:
    xorriso = require_tool("xorriso", "xorriso")
    run([xorriso, "-as", "mkisofs", "-quiet", "-R", "-J", "-V", "ENGINE_TEST", "-o", out, tree])
    return out


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    root = tmp_path / "payload"
    make_payload(root)
    return root


@pytest.fixture
def iso(payload: Path, tmp_path: Path) -> Path:
    return xorriso_iso(payload, tmp_path / "engine.iso")


@pytest.mark.parametrize("kind", ["directory", "iso"])
def test_reads_manifest_and_every_file(kind: str, payload: Path, tmp_path: Path) -> None:
    path = payload if kind == "directory" else xorriso_iso(payload, tmp_path / "m.iso")
    with MediumReader.open(path) as medium:
        assert medium.kind == kind
        assert isinstance(medium, DirectoryMedium if kind == "directory" else IsoMedium)
        assert str(medium.manifest.version) == "5.0.0"
        assert medium.manifest.eula == "engine/EULA.txt"
        for rel, data in FILES.items():
            assert medium.exists(rel)
            assert medium.size(rel) == len(data)
            assert medium.read_bytes(rel) == data
            out = io.BytesIO()
            seen: list[int] = []
            assert medium.copy_to(rel, out, progress=seen.append) == len(data)
            assert out.getvalue() == data
            assert sum(seen) == len(data)
        assert not medium.exists("boot/missing")
        assert medium.verify_files() == []
        assert set(FILES) | {MANIFEST_PATH} <= set(medium.list_files())
        assert json.loads(medium.read_bytes(MANIFEST_PATH))["version"] == "5.0.0"


def test_verify_progress_counts_every_byte(iso: Path) -> None:
    counted: list[int] = []
    with MediumReader.open(iso) as medium:
        assert medium.verify_files(progress=counted.append) == []
    assert sum(counted) == sum(len(d) for d in FILES.values())


def test_flipped_byte_in_an_iso_is_found(iso: Path) -> None:
    image = bytearray(iso.read_bytes())
    offset = image.find(b"kernel-end")
    assert offset > 0
    # Both vmlinuz files have this content; the one xorriso laid out first is changed.
    image[offset] ^= 0x01
    iso.write_bytes(bytes(image))
    with MediumReader.open(iso) as medium:
        problems = medium.verify_files()
    assert len(problems) == 1
    assert problems[0].path in {"boot/vmlinuz", "system/vmlinuz"}
    first = problems[0]
    assert first.problem is Problem.SHA256
    assert first.expected == hashlib.sha256(FILES[first.path]).hexdigest()
    assert first.actual is not None
    assert first.actual != first.expected
    assert "sha256 is" in first.describe()


def test_directory_problems_missing_size_and_sha(payload: Path) -> None:
    (payload / "engine/EULA.txt").unlink()
    (payload / "boot/initrd.img").write_bytes(b"longer than before")
    (payload / "system/initrd.img").write_bytes(b"Engine initrd")
    with MediumReader.open(payload) as medium:
        problems = {p.path: p for p in medium.verify_files()}
    assert problems["engine/EULA.txt"] == FileProblem(
        "engine/EULA.txt", Problem.MISSING, str(len(FILES["engine/EULA.txt"])), None
    )
    assert problems["boot/initrd.img"].problem is Problem.SIZE
    assert problems["boot/initrd.img"].actual == str(len(b"longer than before"))
    assert problems["system/initrd.img"].problem is Problem.SHA256
    assert len(problems) == 3
    assert problems["engine/EULA.txt"].describe() == "engine/EULA.txt: missing"


def test_missing_file_and_bad_paths_are_user_errors(iso: Path, payload: Path) -> None:
    for path in (iso, payload):
        with MediumReader.open(path) as medium:
            with pytest.raises(UserInputError, match="no-such: no such file on the medium"):
                medium.read_bytes("no-such")
            with pytest.raises(UserInputError, match="escapes the medium"):
                medium.read_bytes("../etc/passwd")
            with pytest.raises(UserInputError, match="is absolute"):
                medium.exists("/etc/passwd")


def test_directory_reader_does_not_follow_links_out_of_the_tree(payload: Path) -> None:
    (payload / "engine/outside").symlink_to("/etc/hostname")
    with MediumReader.open(payload) as medium:
        assert not medium.exists("engine/outside")


# --- bad media -----------------------------------------------------------------------------


def error_line(path: Path) -> tuple[type[BaseException], str]:
    with pytest.raises(UserInputError) as caught:
        MediumReader.open(path)
    message = caught.value.message
    assert "\n" not in message
    assert caught.value.hint
    return type(caught.value), message


def test_nonexistent_path(tmp_path: Path) -> None:
    assert error_line(tmp_path / "nope.iso") == (
        UserInputError,
        f"{tmp_path}/nope.iso: no such file",
    )


def test_directory_without_manifest(tmp_path: Path) -> None:
    (tmp_path / "boot").mkdir()
    assert error_line(tmp_path) == (InvalidPayload, f"{tmp_path}: no engine/manifest.json")


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, world\n", b"\0" * 40000, b"CD001" * 10000],
    ids=["empty", "text", "zeros", "cd001"],
)
def test_non_iso_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "not.iso"
    path.write_bytes(content)
    kind, message = error_line(path)
    assert kind is InvalidISO
    assert message.startswith(f"{path}: not an ISO 9660 image (")


@pytest.mark.parametrize("keep", [100_000, 0.5], ids=["descriptors-only", "half"])
def test_truncated_iso(iso: Path, keep: float) -> None:
    data = iso.read_bytes()
    cut = int(keep) if keep > 1 else int(len(data) * keep)
    iso.write_bytes(data[:cut])
    kind, message = error_line(iso)
    assert kind is InvalidISO
    assert message.startswith(f"{iso}: not an ISO 9660 image (")
    assert "truncated" in message


def test_iso_without_manifest(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "boot").mkdir(parents=True)
    (tree / "boot/vmlinuz").write_bytes(b"k")
    iso = xorriso_iso(tree, tmp_path / "plain.iso")
    assert error_line(iso) == (InvalidManifest, f"{iso}: no /engine/manifest.json on the medium")


def test_iso_with_an_escaping_manifest_path(payload: Path, tmp_path: Path) -> None:
    doc = json.loads((payload / MANIFEST_PATH).read_bytes())
    doc["files"][0]["path"] = "../x"
    (payload / MANIFEST_PATH).write_text(json.dumps(doc))
    iso = xorriso_iso(payload, tmp_path / "evil.iso")
    kind, message = error_line(iso)
    assert issubclass(kind, InvalidManifest)
    assert message == f"{iso}:/engine/manifest.json: files[0].path: '../x' escapes the medium"


# --- ISOs without Rock Ridge: the Joliet and ISO 9660 fallbacks ----------------------------


def pycdlib_iso(out: Path, files: dict[str, bytes], joliet: bool) -> None:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=4, joliet=3 if joliet else None, vol_ident="ENGINE")
    made: set[str] = set()
    for rel in sorted(
        {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
    ):
        iso.add_directory("/" + rel.upper(), joliet_path=("/" + rel) if joliet else None)
        made.add(rel)
    for rel, data in files.items():
        iso.add_fp(
            io.BytesIO(data), len(data), "/" + rel.upper() + ";1",
            joliet_path=("/" + rel) if joliet else None,
        )  # fmt: skip
    iso.write(str(out))
    iso.close()


@pytest.mark.parametrize("joliet", [True, False], ids=["joliet", "iso9660"])
def test_iso_without_rock_ridge(payload: Path, tmp_path: Path, joliet: bool) -> None:
    files = {
        p.relative_to(payload).as_posix(): p.read_bytes() for p in payload.rglob("*") if p.is_file()
    }
    out = tmp_path / "norr.iso"
    pycdlib_iso(out, files, joliet)
    with MediumReader.open(out) as medium:
        assert isinstance(medium, IsoMedium)
        assert medium.namespace == ("joliet_path" if joliet else "iso_path")
        assert medium.verify_files() == []
        assert medium.read_bytes("engine/EULA.txt") == FILES["engine/EULA.txt"]


# --- hypothesis: random trees read back byte-identical from a directory and an ISO ----------

NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=20)


@st.composite
def payload_trees(draw: st.DrawFn) -> dict[str, bytes]:
    files = dict(FILES)
    for _ in range(draw(st.integers(min_value=0, max_value=10))):
        parts = draw(st.lists(NAME, min_size=1, max_size=5))
        rel = "/".join([draw(st.sampled_from(["extra", "system/root/opt", "Data"])), *parts])
        if not any(rel == p or rel.startswith(p + "/") or p.startswith(rel + "/") for p in files):
            files[rel] = draw(st.binary(max_size=5000))
    return files


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tree=payload_trees())
def test_generated_trees_read_back_identical(
    tmp_path_factory: pytest.TempPathFactory, tree: dict[str, bytes]
) -> None:
    base = tmp_path_factory.mktemp("gen")
    root = base / "payload"
    manifest = make_payload(root, tree)
    iso = xorriso_iso(root, base / "gen.iso")
    for path in (root, iso):
        with MediumReader.open(path) as medium:
            assert medium.manifest == manifest
            assert medium.verify_files() == []
            for rel, data in tree.items():
                assert medium.read_bytes(rel) == data
