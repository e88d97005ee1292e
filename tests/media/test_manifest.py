"""The manifest schema: every problem reported with its JSON path, generation from a tree,
the payload check, and a hypothesis round trip tree -> manifest -> JSON -> manifest."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enginekit.versions import DiskLayout, EngineVersion
from media.errors import InvalidManifest, InvalidPayload
from media.manifest import MANIFEST_PATH, FileEntry, ManifestErrors, SystemPayload, parse_manifest
from media.payload_tree import check_payload_tree, manifest_for_tree, write_manifest

SHA = "0" * 64


def good_doc() -> dict[str, Any]:
    return {
        "product": "Engine",
        "version": "5.0.0",
        "upgrade_from": ["4.5.0"],
        "pv_drivers": "5.0.0",
        "layout": "gpt-ab",
        "eula": "engine/EULA.txt",
        "keyboards": ["us", "uk", "de", "fr"],
        "system": {
            "kernel": "system/vmlinuz",
            "initrd": "system/initrd.img",
            "root": "system/root",
        },
        "files": [
            {"path": "boot/vmlinuz", "size": 10, "sha256": SHA},
            {"path": "engine/EULA.txt", "size": 5, "sha256": SHA},
            {"path": "system/vmlinuz", "size": 10, "sha256": SHA},
            {"path": "system/initrd.img", "size": 3, "sha256": SHA},
            {"path": "system/root/etc/engine/defaults.json", "size": 2, "sha256": SHA},
        ],
    }


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def problems_of(doc: Any) -> tuple[str, ...]:
    with pytest.raises(ManifestErrors) as caught:
        parse_manifest(encode(doc))
    return caught.value.problems


def test_good_manifest_parses_to_typed_fields() -> None:
    m = parse_manifest(encode(good_doc()))
    assert m.version == EngineVersion(5, 0, 0)
    assert m.upgrade_from == (EngineVersion(4, 5, 0),)
    assert m.pv_drivers == EngineVersion(5, 0, 0)
    assert m.layout is DiskLayout.GPT_AB
    assert m.system == SystemPayload("system/vmlinuz", "system/initrd.img", "system/root")
    assert m.files[0] == FileEntry("boot/vmlinuz", 10, SHA)
    assert [e.path for e in m.system_root_files()] == ["system/root/etc/engine/defaults.json"]
    assert m.file("engine/EULA.txt") == FileEntry("engine/EULA.txt", 5, SHA)
    assert m.file("nope") is None


def test_to_json_is_stable_sorted_and_round_trips() -> None:
    m = parse_manifest(encode(good_doc()))
    text = m.to_json()
    assert text.endswith(b"\n")
    assert list(json.loads(text)) == sorted(json.loads(text))
    assert parse_manifest(text) == m
    assert parse_manifest(text).to_json() == text


BAD_PATHS = [
    ("../x", "escapes the medium"),
    ("a/../../x", "escapes the medium"),
    ("/etc/x", "is absolute"),
    ("a//b", "empty component"),
    ("a/b/", "empty component"),
    ("a\\b", "backslash"),
    ("a\x00b", "NUL"),
    ("a/\nb", "control character"),
    ("./a", "not normalised"),
    ("", "is empty"),
]


@pytest.mark.parametrize(("bad", "why"), BAD_PATHS)
def test_bad_file_path_is_reported_with_its_json_path(bad: str, why: str) -> None:
    doc = good_doc()
    doc["files"].append({"path": bad, "size": 1, "sha256": SHA})
    with pytest.raises(InvalidManifest) as caught:
        parse_manifest(encode(doc), source="engine/manifest.json")
    message = caught.value.message
    assert message.startswith("engine/manifest.json: files[5].path: ")
    assert repr(bad) in message
    assert why in message
    assert caught.value.hint


def test_exact_message_for_an_escaping_path() -> None:
    doc = good_doc()
    doc["files"][3]["path"] = "../x"
    doc["system"]["initrd"] = "boot/vmlinuz"
    with pytest.raises(InvalidManifest) as caught:
        parse_manifest(encode(doc))
    assert str(caught.value) == "engine/manifest.json: files[3].path: '../x' escapes the medium"


@pytest.mark.parametrize("field", ["eula", "system.kernel", "system.initrd", "system.root"])
@pytest.mark.parametrize(("bad", "why"), [("../x", "escapes"), ("/etc/x", "absolute")])
def test_bad_reference_paths(field: str, bad: str, why: str) -> None:
    doc = good_doc()
    if "." in field:
        doc["system"][field.split(".")[1]] = bad
    else:
        doc[field] = bad
    (problem,) = problems_of(doc)
    assert problem.startswith(f"{field}: {bad!r}")
    assert why in problem


def test_unknown_keys_are_errors_at_every_level() -> None:
    doc = good_doc()
    doc["colour"] = "blue"
    doc["system"]["bootloader"] = "grub"
    doc["files"][1]["mode"] = 420
    problems = problems_of(doc)
    assert len(problems) == 3
    assert problems[0].startswith("colour: unknown key")
    assert any(p.startswith("files[1].mode: unknown key") for p in problems)
    assert any(p.startswith("system.bootloader: unknown key") for p in problems)


def test_missing_keys_are_named() -> None:
    doc = good_doc()
    del doc["keyboards"]
    del doc["files"][0]["sha256"]
    del doc["system"]["root"]
    problems = problems_of(doc)
    assert "keyboards: missing" in problems
    assert "files[0].sha256: missing" in problems
    assert "system.root: missing" in problems


WRONG_TYPES = [
    (("product",), 5, "product: must be a string, not a number"),
    (("product",), "  ", "product: must not be empty"),
    (("version",), "five", "version: 'five' is not a version"),
    (("version",), 5.0, "version: must be a string, not a number"),
    (("pv_drivers",), None, "pv_drivers: must be a string, not null"),
    (("upgrade_from",), "4.5.0", "upgrade_from: must be a list, not a string"),
    (("upgrade_from",), ["4.5"], "upgrade_from[0]: '4.5' is not a version"),
    (("upgrade_from",), ["5.0.0"], "upgrade_from[0]: 5.0.0 is not older than version 5.0.0"),
    (("upgrade_from",), ["4.5.0", "4.5.0"], "upgrade_from[1]: 4.5.0 is listed twice"),
    (("layout",), "lvm", "layout: 'lvm' is not a disk layout"),
    (("keyboards",), [], "keyboards: must list at least one layout"),
    (("keyboards",), ["us", 7], "keyboards[1]: must be a string, not a number"),
    (("keyboards",), ["us", "us"], "keyboards[1]: 'us' is listed twice"),
    (("keyboards",), ["US English"], "keyboards[0]: 'US English' is not a layout code"),
    (("system",), [], "system: must be an object, not a list"),
    (("files",), {}, "files: must be a list, not an object"),
    (("files", 0), "boot/vmlinuz", "files[0]: must be an object, not a string"),
    (("files", 0, "size"), "10", "files[0].size: must be a whole number of bytes, not a string"),
    (("files", 0, "size"), True, "files[0].size: must be a whole number of bytes, not a boolean"),
    (("files", 0, "size"), 1.5, "files[0].size: must be a whole number of bytes, not a number"),
    (("files", 0, "size"), -1, "files[0].size: -1 is negative"),
    (("files", 0, "sha256"), "ABC", "files[0].sha256: 'ABC' is not 64 lower-case hex digits"),
    (("files", 0, "sha256"), "AB" * 32, "is not 64 lower-case hex digits"),
    (("files", 0, "path"), 3, "files[0].path: must be a string, not a number"),
]


@pytest.mark.parametrize(("where", "value", "expected"), WRONG_TYPES)
def test_wrong_types_and_values(where: tuple[Any, ...], value: Any, expected: str) -> None:
    doc = good_doc()
    target: Any = doc
    for step in where[:-1]:
        target = target[step]
    target[where[-1]] = value
    problems = problems_of(doc)
    assert any(expected in p for p in problems), problems


def test_every_problem_is_reported_in_one_error() -> None:
    doc = good_doc()
    doc["version"] = "x"
    doc["layout"] = "zfs"
    doc["files"][0]["path"] = "../boot"
    doc["files"][2]["path"] = "/system/vmlinuz"
    doc["files"][4]["size"] = "big"
    doc["extra"] = 1
    with pytest.raises(ManifestErrors) as caught:
        parse_manifest(encode(doc), source="m.json")
    err = caught.value
    assert len(err.problems) >= 6
    for problem in err.problems:
        assert problem in err.message
    assert err.message.startswith("m.json: ")
    assert "; " in err.message


def test_references_must_be_listed_files() -> None:
    doc = good_doc()
    doc["eula"] = "engine/LICENCE.txt"
    doc["system"]["kernel"] = "system/bzImage"
    doc["system"]["root"] = "system/rootfs"
    problems = problems_of(doc)
    assert "eula: 'engine/LICENCE.txt' is not in files" in problems
    assert "system.kernel: 'system/bzImage' is not in files" in problems
    assert "system.root: no file in files is under 'system/rootfs/'" in problems


def test_system_root_must_be_a_directory_prefix_not_a_file() -> None:
    doc = good_doc()
    doc["system"]["root"] = "system/vmlinuz"
    assert problems_of(doc) == ("system.root: 'system/vmlinuz' is a file; it must be a directory",)


def test_duplicates_conflicts_and_reserved_paths() -> None:
    doc = good_doc()
    doc["files"] += [
        {"path": "boot/vmlinuz", "size": 1, "sha256": SHA},
        {"path": "boot/vmlinuz/inner", "size": 1, "sha256": SHA},
        {"path": MANIFEST_PATH, "size": 1, "sha256": SHA},
        {"path": "isolinux/isolinux.cfg", "size": 1, "sha256": SHA},
    ]
    problems = problems_of(doc)
    assert "files[5].path: 'boot/vmlinuz' is already files[0]" in problems
    assert "files[6].path: 'boot/vmlinuz/inner' is inside 'boot/vmlinuz', which is a file" in (
        problems
    )
    assert "files[7].path: the manifest cannot list itself" in problems
    assert any(
        p.startswith("files[8].path: 'isolinux/isolinux.cfg' is inside isolinux/")
        for p in (problems)
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"{not json", "engine/manifest.json: not valid JSON (line 1 column 2"),
        (b"\xff\xfe", "engine/manifest.json: not UTF-8 text"),
        (b"[1, 2]", "engine/manifest.json: (top): must be a JSON object, not a list"),
        (b'{"product": "a", "product": "b"}', "duplicate key 'product'"),
        (b"", "not valid JSON"),
    ],
)
def test_unreadable_documents(data: bytes, expected: str) -> None:
    with pytest.raises(InvalidManifest) as caught:
        parse_manifest(data)
    assert expected in caught.value.message
    assert "\n" not in caught.value.message


# --- trees on disk -------------------------------------------------------------------------


def make_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


MINIMAL = {
    "boot/vmlinuz": b"kernel",
    "boot/initrd.img": b"initrd",
    "engine/EULA.txt": b"licence",
    "system/vmlinuz": b"kernel",
    "system/initrd.img": b"engine init",
    "system/root/usr/lib/engine/engined": b"#!/bin/sh\n",
}


def tree_manifest(root: Path) -> Any:
    return manifest_for_tree(
        root, version="5.0.0", upgrade_from=["4.5.0"], pv_drivers="5.0.0",
        layout=DiskLayout.GPT_AB, keyboards=["us"],
    )  # fmt: skip


def test_manifest_for_tree_lists_files_but_not_manifest_or_isolinux(tmp_path: Path) -> None:
    make_tree(tmp_path, {**MINIMAL, "isolinux/isolinux.cfg": b"x", MANIFEST_PATH: b"old"})
    (tmp_path / "empty-dir").mkdir()
    m = tree_manifest(tmp_path)
    assert [f.path for f in m.files] == sorted(MINIMAL)
    assert m.file("boot/vmlinuz") == FileEntry(
        "boot/vmlinuz", 6, hashlib.sha256(b"kernel").hexdigest()
    )
    assert m.system_root_files() == (m.file("system/root/usr/lib/engine/engined"),)


def test_manifest_for_tree_refuses_what_a_medium_cannot_carry(tmp_path: Path) -> None:
    make_tree(tmp_path, MINIMAL)
    os.symlink("vmlinuz", tmp_path / "boot/linux")
    with pytest.raises(InvalidPayload, match="boot/linux is a symbolic link"):
        tree_manifest(tmp_path)
    (tmp_path / "boot/linux").unlink()
    (tmp_path / "engine/EULA.txt").unlink()
    with pytest.raises(InvalidManifest, match=re.escape("eula: 'engine/EULA.txt' is not in files")):
        tree_manifest(tmp_path)
    (tmp_path / "engine/EULA.txt").write_bytes(b"x")
    (tmp_path / "bad\\name").write_bytes(b"x")
    with pytest.raises(InvalidPayload, match="backslash"):
        tree_manifest(tmp_path)


def test_check_payload_tree_accepts_a_good_tree(tmp_path: Path) -> None:
    make_tree(tmp_path, MINIMAL)
    m = tree_manifest(tmp_path)
    write_manifest(tmp_path, m)
    assert check_payload_tree(tmp_path) == m


def test_check_payload_tree_without_manifest(tmp_path: Path) -> None:
    make_tree(tmp_path, MINIMAL)
    with pytest.raises(InvalidPayload) as caught:
        check_payload_tree(tmp_path)
    assert caught.value.message == f"{tmp_path}: no engine/manifest.json"
    assert caught.value.hint


def test_check_payload_tree_names_every_changed_file(tmp_path: Path) -> None:
    make_tree(tmp_path, MINIMAL)
    write_manifest(tmp_path, tree_manifest(tmp_path))
    (tmp_path / "boot/vmlinuz").write_bytes(b"kernEl")  # one flipped byte, same size
    (tmp_path / "boot/initrd.img").write_bytes(b"initrd!")
    (tmp_path / "engine/EULA.txt").unlink()
    (tmp_path / "stray.txt").write_bytes(b"?")
    with pytest.raises(InvalidPayload) as caught:
        check_payload_tree(tmp_path)
    message = caught.value.message
    assert "boot/vmlinuz: sha256 differs from the manifest" in message
    assert "boot/initrd.img: size is 7, manifest says 6" in message
    assert "engine/EULA.txt: missing" in message
    assert "stray.txt: not listed in engine/manifest.json" in message


def test_check_payload_tree_with_a_broken_manifest(tmp_path: Path) -> None:
    make_tree(tmp_path, MINIMAL)
    doc = json.loads(tree_manifest(tmp_path).to_json())
    doc["files"][0]["path"] = "/etc/x"
    (tmp_path / MANIFEST_PATH).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / MANIFEST_PATH).write_text(json.dumps(doc))
    with pytest.raises(InvalidManifest) as caught:
        check_payload_tree(tmp_path)
    assert f"{tmp_path}/engine/manifest.json: files[0].path: '/etc/x' is absolute" in str(
        caught.value
    )


# --- hypothesis: generated trees round-trip ------------------------------------------------

NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12)
CONTENT = st.binary(max_size=2048)


@st.composite
def payload_trees(draw: st.DrawFn) -> dict[str, bytes]:
    """Relative path -> contents: the required files plus random nested extras."""
    files = dict(MINIMAL)
    count = draw(st.integers(min_value=0, max_value=12))
    for _ in range(count):
        parts = draw(st.lists(NAME, min_size=1, max_size=4))
        top = draw(st.sampled_from(["extra", "system/root", "engine", "data.d"]))
        rel = "/".join([top, *parts])
        # A path cannot be both a file and a directory; skip draws that would clash.
        clash = any(rel == p or rel.startswith(p + "/") or p.startswith(rel + "/") for p in files)
        if not clash:
            files[rel] = draw(CONTENT)
    return files


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tree=payload_trees(),
    keyboards=st.lists(
        st.sampled_from(["us", "de", "fr", "jp", "pt-br"]), min_size=1, max_size=5, unique=True
    ),
)
def test_generated_tree_round_trips_through_json(
    tmp_path_factory: pytest.TempPathFactory, tree: dict[str, bytes], keyboards: list[str]
) -> None:
    root = tmp_path_factory.mktemp("tree")
    make_tree(root, tree)
    m = manifest_for_tree(
        root, version="4.5.0", upgrade_from=["4.0.0"], pv_drivers="4.5.0",
        layout="gpt-ab", keyboards=keyboards,
    )  # fmt: skip
    assert sorted(f.path for f in m.files) == sorted(tree)
    for rel, data in tree.items():
        assert m.file(rel) == FileEntry(rel, len(data), hashlib.sha256(data).hexdigest())
    again = parse_manifest(m.to_json())
    assert again == m
    assert again.to_json() == m.to_json()
    write_manifest(root, m)
    assert check_payload_tree(root) == m
    # Any single-field damage is caught by the parser (not silently accepted).
    damaged = copy.deepcopy(json.loads(m.to_json()))
    damaged["files"][0]["path"] = "../" + damaged["files"][0]["path"]
    with pytest.raises(InvalidManifest, match=r"files\[0\]\.path: .* escapes the medium"):
        parse_manifest(json.dumps(damaged).encode())


def test_one_bad_entry_gives_one_problem_not_follow_on_noise() -> None:
    doc = good_doc()
    doc["files"][1]["sha256"] = "x"  # the EULA's entry
    assert problems_of(doc) == ("files[1].sha256: 'x' is not 64 lower-case hex digits",)
    doc = good_doc()
    doc["files"] = "everything"
    assert problems_of(doc) == ("files: must be a list, not a string",)


@pytest.mark.parametrize(
    "doc",
    [b"[" * 100_000 + b"]" * 100_000, b'{"a\\nb": 1}', b'{"x\\u001b[2J": 1}', b'{"a": 1, "a": 2}'],
    ids=["deep-nesting", "newline-key", "escape-key", "duplicate-key"],
)
def test_hostile_manifest_is_one_clean_line(doc: bytes) -> None:
    with pytest.raises(InvalidManifest) as info:
        parse_manifest(doc)
    assert "\n" not in info.value.message
    assert "\x1b" not in info.value.message
