"""Every engine-media failure has a `hint:` line, as the README promises.

A new-user walkthrough found four without one: an `md5 check` mismatch, a `verify` failure,
`md5 implant` of a file that is not an ISO, and an unconfirmed `usb write`.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from commands.engine_media import main


def _failure(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    status = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len([ln for ln in lines if ln.startswith("error:")]) == 1, err
    hints = [ln for ln in lines if ln.startswith("hint: ")]
    assert len(hints) == 1 and len(hints[0]) > len("hint: ") + 10, err
    return status, lines


def _flip_middle_byte(path: Path) -> None:
    with open(path, "r+b") as fp:
        fp.seek(path.stat().st_size // 2)
        byte = fp.read(1)
        fp.seek(-1, 1)
        fp.write(bytes([byte[0] ^ 0xFF]))


def test_md5_mismatch_and_verify_failure_have_hints(
    reference_iso_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _flip_middle_byte(reference_iso_copy)
    status, lines = _failure(["md5", "check", str(reference_iso_copy)], capsys)
    assert status == 1
    assert any("does not match" in ln for ln in lines)
    assert any(ln.startswith("hint: ") and "fetch or build it again" in ln for ln in lines)

    status, lines = _failure(["verify", str(reference_iso_copy)], capsys)
    assert status == 1
    assert any(ln.startswith(f"error: {reference_iso_copy}: verification failed") for ln in lines)


def test_md5_absent_has_a_hint(
    reference_iso_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with open(reference_iso_copy, "r+b") as fp:
        fp.seek(16 * 2048 + 883)
        fp.write(b" " * 512)
    status, lines = _failure(["md5", "check", str(reference_iso_copy)], capsys)
    assert status == 2
    assert f"hint: embed one with 'engine-media md5 implant {reference_iso_copy}'" in lines


@pytest.mark.parametrize("size", [100, 40_000, 200_000])
def test_md5_implant_of_a_non_iso_has_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], size: int
) -> None:
    readme = tmp_path / "README.md"
    readme.write_bytes(b"# not an ISO\n" * (size // 13))
    before = readme.read_bytes()
    for action in ("implant", "check"):
        status, lines = _failure(["md5", action, str(readme)], capsys)
        assert status == 2
        assert any("not an ISO 9660 image" in ln for ln in lines)
        assert "hint: give the path of an .iso file or of a device holding one" in lines
    assert readme.read_bytes() == before


def test_usb_write_not_confirmed_has_a_hint(
    reference_iso_copy: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stick = tmp_path / "stick.img"
    with open(stick, "wb") as f:
        f.truncate(reference_iso_copy.stat().st_size)
    monkeypatch.setattr("sys.stdin", io.StringIO("no\n"))
    status, lines = _failure(["usb", "write", str(reference_iso_copy), str(stick)], capsys)
    assert status == 2
    assert "error: not confirmed; nothing was written" in lines
    assert "hint: type 'yes' in full to erase the targets, or add --yes" in lines
    assert stick.stat().st_blocks == 0  # still sparse: nothing was written
