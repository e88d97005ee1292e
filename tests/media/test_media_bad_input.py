"""Every bad input, through the CLI: one clear `error:` line naming the problem,
a non-zero exit status, never a traceback."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pycdlib
import pytest

from commands.engine_media import main
from enginekit.process import run

from .conftest import BlockNode, SmallPayload


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    errors = [ln for ln in captured.err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, captured.err
    assert status != 0
    return status, errors[0]


def _xorriso_iso(tree: Path, out: Path) -> Path:
    """A plain Rock Ridge + Joliet ISO of `tree` made by an outside tool."""
    run(["xorriso", "-as", "mkisofs", "-R", "-J", "-V", "ENGINE_5_0_0", "-o", out, tree])
    return out


def test_truncated_iso(reference_iso_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    size = reference_iso_copy.stat().st_size
    with open(reference_iso_copy, "r+b") as fp:
        fp.truncate(size // 2)
    # One wording everywhere; a failed verification (exit 1) where the command verifies,
    # bad input (exit 2) for inspect.
    expected = (
        f"error: {reference_iso_copy}: truncated: the file has {size // 2} bytes but the ISO "
        f"declares {size} bytes"
    )
    for command, exit_status in (
        (["verify"], 1),
        (["verify", "--json"], 1),
        (["verify", "--boot"], 1),
        (["md5", "check"], 1),
        (["inspect"], 2),
    ):
        status, line = _run_cli([*command, str(reference_iso_copy)], capsys)
        assert (status, line) == (exit_status, expected), command


def test_flipped_byte_in_a_payload_file(
    reference_iso_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = "/system/root/etc/engine/defaults.json"
    iso = pycdlib.PyCdlib()
    iso.open(str(reference_iso_copy))
    extent = iso.get_record(rr_path=target).extent_location()
    iso.close()
    with open(reference_iso_copy, "r+b") as fp:
        fp.seek(extent * 2048 + 3)
        byte = fp.read(1)
        fp.seek(extent * 2048 + 3)
        fp.write(bytes([byte[0] ^ 0x01]))
    status, line = _run_cli(["verify", str(reference_iso_copy)], capsys)
    assert status == 1
    assert "verification failed" in line
    assert "system/root/etc/engine/defaults.json: sha256 is" in line
    # The JSON report names the same file and check.
    assert main(["verify", "--json", str(reference_iso_copy)]) == 1
    report = json.loads(capsys.readouterr().out)
    failed = {c["name"]: c["detail"] for c in report["checks"] if not c["ok"]}
    assert set(failed) == {"md5", "files"}
    assert "defaults.json" in failed["files"]


def test_missing_manifest(
    small_payload: SmallPayload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = small_payload()
    (tree / "engine/manifest.json").unlink()
    iso = _xorriso_iso(tree, tmp_path / "nomanifest.iso")
    status, line = _run_cli(["verify", str(iso)], capsys)
    assert status == 1
    assert "no /engine/manifest.json on the medium" in line


@pytest.mark.parametrize(
    ("bad_path", "why"), [("../x", "escapes the medium"), ("/etc/x", "is absolute")]
)
def test_manifest_path_escaping(
    small_payload: SmallPayload,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    bad_path: str,
    why: str,
) -> None:
    tree = small_payload()
    manifest_path = tree / "engine/manifest.json"
    doc = json.loads(manifest_path.read_text())
    doc["files"].append({"path": bad_path, "size": 1, "sha256": "0" * 64})
    manifest_path.write_text(json.dumps(doc))
    # As a payload to build from: refused before anything is written.
    out = tmp_path / "x.iso"
    status, line = _run_cli(["build", "--payload", str(tree), "-o", str(out)], capsys)
    assert status == 2
    assert why in line
    assert bad_path in line
    assert not out.exists()
    # On a medium made by another tool: verify refuses the manifest.
    iso = _xorriso_iso(tree, tmp_path / "escape.iso")
    status, line = _run_cli(["verify", str(iso)], capsys)
    assert status == 1
    assert why in line
    assert bad_path in line


def test_not_an_iso(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "notes.iso"
    junk.write_bytes(b"this is a text file, not an ISO\n" * 3000)
    for command in (["verify"], ["inspect", "--json"], ["md5", "check"]):
        status, line = _run_cli([*command, str(junk)], capsys)
        assert status == 2
        assert str(junk) in line


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.iso"
    for command in (["verify"], ["inspect"], ["md5", "check"], ["md5", "implant"]):
        status, line = _run_cli([*command, str(missing)], capsys)
        assert status == 2
        assert line == f"error: {missing}: no such file"


def test_payload_directory_without_manifest(
    small_payload: SmallPayload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = small_payload()
    (tree / "engine/manifest.json").unlink()
    out = tmp_path / "x.iso"
    status, line = _run_cli(["build", "--payload", str(tree), "-o", str(out)], capsys)
    assert status == 2
    assert "no engine/manifest.json" in line
    assert str(tree) in line
    assert not out.exists()
    status, line = _run_cli(
        ["build", "--payload", str(tmp_path / "absent"), "-o", str(out)], capsys
    )
    assert line == f"error: payload {tmp_path / 'absent'} does not exist"


def test_changed_payload_file_is_refused_at_build(
    small_payload: SmallPayload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = small_payload()
    (tree / "engine/EULA.txt").write_text("changed after the manifest was made\n")
    status, line = _run_cli(
        ["build", "--payload", str(tree), "-o", str(tmp_path / "x.iso")], capsys
    )
    assert status == 2
    assert "engine/EULA.txt" in line
    assert [p for p in tmp_path.iterdir() if p.suffix in (".iso", ".partial")] == []
    shutil.rmtree(tree)


@pytest.mark.root
def test_build_and_implant_refuse_a_block_device(
    small_payload: SmallPayload,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    block_node: BlockNode,
) -> None:
    from enginekit.errors import UserInputError
    from media import isomd5

    node = block_node.path
    status, line = _run_cli(["build", "--payload", str(small_payload()), "-o", str(node)], capsys)
    assert status == 2
    assert line == (
        f"error: output {node} is a block device; to write a stick use 'engine-media usb write'"
    )
    status, line = _run_cli(["build", "--reference", "5.0.0", "-o", str(node)], capsys)
    assert status == 2
    assert "is a block device" in line
    status, line = _run_cli(["md5", "implant", str(node)], capsys)
    assert status == 2
    assert str(node) in line
    with pytest.raises(UserInputError, match="is a block device; to write a stick use"):
        isomd5.implant(node)
    assert stat.S_ISBLK(node.lstat().st_mode)
    assert node.lstat().st_rdev == block_node.rdev
    assert block_node.backing.read_bytes() == bytes(1 << 20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fakeblk", "payload0"]


def test_second_implant_names_the_force_option(
    reference_iso_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The reference ISO has its checksum implanted already.
    assert main(["md5", "implant", str(reference_iso_copy)]) == 2
    err = capsys.readouterr().err
    assert "already holds an isomd5sum checksum" in err
    (hint,) = [ln for ln in err.splitlines() if ln.startswith("hint:")]
    assert "add --force to overwrite it" in hint
    assert "pass force" not in hint
