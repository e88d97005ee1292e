"""Answers baked into a medium: `engine-media build --answers` and `engine-media remaster IN.iso
--answers FILE -o OUT.iso` put the answer file on the medium as `engine/answers.toml`, listed
in its manifest, so the embedded MD5, the files' SHA-256 and the boot menus all still hold
(`verify`). The answers are checked before anything is written; the input medium and the
user's payload tree are only read; a damaged input is not rebuilt. The live installer reads
the answers from the medium it booted from, checked against the manifest."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from commands.engine_live import baked_answers
from commands.engine_media import main as engine_media
from media import eltorito
from media.errors import VerificationFailed
from media.manifest import ANSWERS_PATH
from media.reader import MediumReader

from .conftest import SmallPayload

UPGRADE = b'[eula]\naccept = true\n\n[existing]\naction = "upgrade"\n\n[finish]\nreboot = true\n'
ERASE = (
    b'[eula]\naccept = true\n\n[keyboard]\nlayout = "us"\n\n[existing]\naction = "erase"\n'
    b'confirm_erase = "f00d"\n\n[registration]\nmode = "standalone"\n'
)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): _sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _answers(tmp_path: Path, data: bytes, name: str = "answers.toml") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_a_remastered_medium_verifies_and_carries_the_answers(
    reference_iso_5: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _sha(reference_iso_5)
    out = tmp_path / "lab.iso"
    answers = _answers(tmp_path, UPGRADE)
    assert (
        engine_media(
            ["remaster", str(reference_iso_5), "--answers", str(answers), "-o", str(out), "--json"]
        )
        == 0
    )
    shown = capsys.readouterr()
    built = json.loads(shown.out)
    assert (built["version"], built["answers"]) == ("5.0.0", str(answers))
    # Good for upgrades; a blank disk would need more, and the technician is told so.
    (warning,) = [line for line in shown.err.splitlines() if line.startswith("warning:")]
    assert warning == (
        f"warning: {answers}: a computer with a blank disk would stop at the start, with "
        "nothing written: a fresh install needs keyboard.layout, registration.mode; add them "
        "if this medium may meet one"
    )
    assert engine_media(["verify", str(out)]) == 0  # MD5, hybrid GPT, manifest, every file
    assert _sha(reference_iso_5) == before  # the input is only read
    with MediumReader.open(out) as baked, MediumReader.open(reference_iso_5) as source:
        assert baked.read_listed(ANSWERS_PATH) == UPGRADE
        entry = baked.manifest.file(ANSWERS_PATH)
        assert entry is not None
        assert entry.sha256 == hashlib.sha256(UPGRADE).hexdigest()
        # The same payload otherwise, and the same boot menus and boot files.
        assert [f for f in baked.manifest.files if f.path != ANSWERS_PATH] == list(
            source.manifest.files
        )
        for rel in (eltorito.ISOLINUX_CFG_PATH, "boot/vmlinuz", "boot/initrd.img"):
            assert baked.read_bytes(rel) == source.read_bytes(rel)
    found = baked_answers(out)
    assert found is not None
    assert found.eula_accept is True
    assert found.source == f"{out}: {ANSWERS_PATH}"
    assert baked_answers(reference_iso_5) is None  # an interactive medium


def test_remastering_again_replaces_the_answers(
    reference_iso_5: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "first.iso", tmp_path / "second.iso"
    up, erase = _answers(tmp_path, UPGRADE, "up.toml"), _answers(tmp_path, ERASE, "erase.toml")
    assert (
        engine_media(["remaster", str(reference_iso_5), "--answers", str(up), "-o", str(first)])
        == 0
    )
    assert engine_media(["remaster", str(first), "--answers", str(erase), "-o", str(second)]) == 0
    assert "unattended (answers from" in capsys.readouterr().out
    with MediumReader.open(second) as reader:
        assert [f.path for f in reader.manifest.files].count(ANSWERS_PATH) == 1
        assert reader.read_listed(ANSWERS_PATH) == ERASE
    assert engine_media(["verify", str(second)]) == 0


def test_build_with_answers_leaves_the_users_payload_tree_as_it_was(
    small_payload: SmallPayload, tmp_path: Path
) -> None:
    payload = small_payload()
    tree_before = _tree(payload)
    out = tmp_path / "small.iso"
    answers = _answers(tmp_path, UPGRADE)
    assert (
        engine_media(
            ["build", "--payload", str(payload), "--answers", str(answers), "-o", str(out)]
        )
        == 0
    )
    assert _tree(payload) == tree_before
    assert not (payload / ANSWERS_PATH).exists()
    with MediumReader.open(out) as reader:
        assert reader.read_listed(ANSWERS_PATH) == UPGRADE
    assert engine_media(["verify", str(out)]) == 0


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (b"[eula]\naccept = false\n", "eula.accept: is false"),
        (b'[keyboard]\nlayout = "us"\n', "eula.accept: is needed"),
        (
            b'[eula]\naccept = true\n[keyboard]\nlayout = "xx"\n',
            "keyboard.layout: 'xx' is not a known layout",
        ),
        (
            b'[eula]\naccept = true\n[existing]\naction = "erase"\n',
            "existing.confirm_erase: is needed",
        ),
        (
            b'[eula]\naccept = true\n[existing]\naction = "erase"\nconfirm_erase = "f00d"\n',
            "erase installs Engine anew, which needs keyboard.layout, registration.mode",
        ),
        (b"[eula\n", "is not valid TOML"),
    ],
    ids=[
        "declined",
        "no-eula",
        "unknown-layout",
        "erase-without-id",
        "erase-without-layout",
        "not-toml",
    ],
)
def test_answers_that_cannot_work_are_one_error_line_and_no_medium(
    reference_iso_5: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    answers: bytes,
    expected: str,
) -> None:
    path = _answers(tmp_path, answers)
    out = tmp_path / "lab.iso"
    assert (
        engine_media(["remaster", str(reference_iso_5), "--answers", str(path), "-o", str(out)])
        == 2
    )
    err = capsys.readouterr().err
    (line,) = _error_lines(err)
    assert line.startswith(f"error: {path}")
    assert expected in err
    assert "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["answers.toml"]  # nothing was written


def test_remaster_never_writes_its_input_and_keeps_an_existing_output(
    reference_iso_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = _answers(tmp_path, UPGRADE)
    before = _sha(reference_iso_copy)
    argv = ["remaster", str(reference_iso_copy), "--answers", str(answers)]
    assert engine_media([*argv, "-o", str(reference_iso_copy), "--force"]) == 2
    assert "is the input medium" in _error_lines(capsys.readouterr().err)[0]
    assert _sha(reference_iso_copy) == before
    existing = tmp_path / "kept.iso"
    existing.write_bytes(b"someone's file")
    assert engine_media([*argv, "-o", str(existing)]) == 2
    assert "already exists" in _error_lines(capsys.readouterr().err)[0]
    assert existing.read_bytes() == b"someone's file"


def test_a_damaged_input_is_not_remastered(
    reference_iso_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with MediumReader.open(reference_iso_copy) as reader:
        entry = reader.manifest.file("engine/EULA.txt")
        assert entry is not None
        eula = reader.read_bytes(entry.path)
    data = reference_iso_copy.read_bytes()
    at = data.index(eula[:64])
    with open(reference_iso_copy, "r+b") as iso:
        iso.seek(at)
        iso.write(bytes([data[at] ^ 0x20]))
    out = tmp_path / "lab.iso"
    answers = _answers(tmp_path, UPGRADE)
    assert (
        engine_media(
            ["remaster", str(reference_iso_copy), "--answers", str(answers), "-o", str(out)]
        )
        == 1
    )
    (line,) = _error_lines(capsys.readouterr().err)
    assert "engine/EULA.txt does not match the medium's manifest" in line
    assert not out.exists()


def test_baked_answers_that_differ_from_the_manifest_are_refused(
    reference_iso_5: Path, tmp_path: Path
) -> None:
    out = tmp_path / "lab.iso"
    answers = _answers(tmp_path, UPGRADE)
    assert (
        engine_media(["remaster", str(reference_iso_5), "--answers", str(answers), "-o", str(out)])
        == 0
    )
    data = out.read_bytes()
    at = data.index(b'action = "upgrade"')
    with open(out, "r+b") as iso:
        iso.seek(at)
        iso.write(b'action = "erase"  ')  # same length: only the hash can tell
    with pytest.raises(VerificationFailed, match="does not match the medium's manifest"):
        baked_answers(out)
