"""`engine-media` in-process (main([...]) with capsys) and once as the installed console
script: build, inspect (text and JSON), md5 implant/check exit codes, verify."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from commands.engine_media import main
from enginekit.process import run

from .conftest import SmallPayload

ENGINE_MEDIA = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "engine-media"


@pytest.mark.parametrize("version", ["4.0.0", "4.5.0", "5.0.0"])
def test_build_reference_then_inspect_and_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], version: str
) -> None:
    out = tmp_path / f"engine-{version}.iso"
    assert main(["build", "--reference", version, "-o", str(out)]) == 0
    assert f"ENGINE_{version.replace('.', '_')}" in capsys.readouterr().out
    assert main(["inspect", str(out), "--json", "--usb-size", "8G"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["version"] == version
    assert data["md5"] == "pass"
    assert data["fits"]["USB"] is True
    assert main(["verify", str(out), "--json"]) == 0
    verified = json.loads(capsys.readouterr().out)
    assert verified["ok"] is True
    assert verified["boots"] == []


def test_build_payload(small_payload: SmallPayload, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out = tmp_path / "p.iso"
    assert main(["build", "--payload", str(small_payload()), "-o", str(out)]) == 0
    assert out.is_file()
    assert main(["verify", str(out)]) == 0
    text = capsys.readouterr().out
    assert "all checks hold" in text
    assert "FAIL" not in text


def test_inspect_human(reference_iso_5: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(reference_iso_5)]) == 0
    text = capsys.readouterr().out
    assert "5.0.0" in text
    assert "ENGINE_5_0_0" in text
    assert "bios: /isolinux/isolinux.bin" in text
    assert "uefi: /isolinux/efiboot.img" in text
    assert "GPT valid" in text
    assert "embedded md5  pass" in text


def test_md5_exit_codes(reference_iso_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["md5", "check", str(reference_iso_copy)]) == 0
    assert "PASS" in capsys.readouterr().out
    # Blank the field: absent -> 2; implant -> pass again.
    with open(reference_iso_copy, "r+b") as fp:
        fp.seek(16 * 2048 + 883)
        fp.write(b" " * 512)
    assert main(["md5", "check", str(reference_iso_copy)]) == 2
    assert "no embedded MD5" in capsys.readouterr().err
    assert main(["md5", "implant", str(reference_iso_copy)]) == 0
    assert main(["md5", "check", str(reference_iso_copy)]) == 0
    # Refuses to implant twice without --force.
    capsys.readouterr()
    assert main(["md5", "implant", str(reference_iso_copy)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert main(["md5", "implant", "--force", str(reference_iso_copy)]) == 0
    # A changed byte in the data -> 1.
    with open(reference_iso_copy, "r+b") as fp:
        fp.seek(reference_iso_copy.stat().st_size // 2)
        byte = fp.read(1)
        fp.seek(-1, 1)
        fp.write(bytes([byte[0] ^ 0xFF]))
    assert main(["md5", "check", str(reference_iso_copy)]) == 1
    assert "does not match" in capsys.readouterr().err


def test_md5_interop_with_isomd5sum(reference_iso_copy: Path) -> None:
    """implantisomd5's sum passes our check; ours passes checkisomd5 (the fixture ISO)."""
    assert run(["checkisomd5", reference_iso_copy], check=False).returncode == 0
    run(["implantisomd5", "--force", reference_iso_copy])
    assert main(["md5", "check", str(reference_iso_copy)]) == 0


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["build", "-o", "x.iso"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "Traceback" not in err
    # No command or action: one error line and a hint, like `engine-media usb` (was usage).
    for argv, what in (
        ([], ("engine-media", "COMMAND")),
        (["md5"], ("engine-media md5", "ACTION")),
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        assert capsys.readouterr().err.splitlines() == [
            f"error: {what[0]}: the following arguments are required: {what[1]}",
            f"hint: see '{what[0]} --help'",
        ]


def test_unknown_reference_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--reference", "9.9.9", "-o", str(tmp_path / "x.iso")]) == 2
    err = capsys.readouterr().err
    assert "9.9.9" in err
    assert "Traceback" not in err
    assert not (tmp_path / "x.iso").exists()


def test_console_script_runs(reference_iso_5: Path, tmp_path: Path) -> None:
    """The installed `engine-media` entry point, as a real process."""
    exe = ENGINE_MEDIA if ENGINE_MEDIA.exists() else Path(shutil.which("engine-media") or "")
    proc = run([exe, "inspect", "--json", reference_iso_5])
    assert json.loads(proc.stdout)["volume_id"] == "ENGINE_5_0_0"
    bad = tmp_path / "not.iso"
    bad.write_bytes(b"hello" * 1000)
    proc = run([exe, "verify", bad], check=False)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert err.splitlines()[0].startswith(f"error: {bad}: not a readable ISO 9660 image")
    assert "Traceback" not in err


@pytest.mark.parametrize("size", ["16", " 16 ", "0"])
def test_usb_size_needs_a_unit(
    reference_iso_5: Path, capsys: pytest.CaptureFixture[str], size: str
) -> None:
    """A bare number for `--usb-size` is refused: 16 would mean 16 bytes, never what is meant."""
    assert main(["inspect", str(reference_iso_5), "--usb-size", size]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"error: --usb-size {size.strip()!r} has no unit",
        f"hint: add one: {size.strip()}G (GiB), {size.strip()}GB (10^9 bytes) or "
        f"{size.strip()}B (bytes)",
    ]
    assert main(["inspect", str(reference_iso_5), "--usb-size", "16G"]) == 0
