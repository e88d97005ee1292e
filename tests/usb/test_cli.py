"""`engine-media usb` in-process, on regular-file targets (no root needed).

Covers the typed confirmation, refusals as one `error:` line each (a mistyped /dev/sdzz must
not create a file), the result table and exit status, `usb verify` reporting the offset of
the first bad block, and `usb list --json`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import error_lines, run_engine_media

MiB = 1024 * 1024


def test_write_to_a_file_asks_for_yes(
    tmp_path: Path,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(3 * MiB)
    stick = tmp_path / "stick.img"
    stick.write_bytes(bytes(8 * MiB))  # a file target is created at the stick's size
    argv = ["usb", "write", str(iso), str(stick)]

    status, _, err = run_engine_media(capsys, monkeypatch, argv, stdin="no\n")
    assert status == 2
    assert "not confirmed; nothing was written" in err
    assert stick.read_bytes() == bytes(8 * MiB)

    status, _, err = run_engine_media(capsys, monkeypatch, argv, stdin="")
    assert status == 2
    assert "no confirmation given" in err

    status, out, err = run_engine_media(capsys, monkeypatch, argv, stdin="yes\n")
    assert status == 0, err
    assert f"About to ERASE and write {iso.name}" in err
    assert str(stick) in err
    assert "Type 'yes'" in err
    assert stick.read_bytes()[: iso.stat().st_size] == iso.read_bytes()
    assert "Result" in out
    assert " ok " in out


def test_refusals_are_one_line_each_and_create_nothing(
    tmp_path: Path,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(2 * MiB)
    good = tmp_path / "good.img"
    good.write_bytes(bytes(iso.stat().st_size))  # a file target is created at the stick's size
    sdzz = Path("/dev/sdzz")
    assert not sdzz.exists()
    argv = ["usb", "write", "--yes", str(iso), str(sdzz), str(iso), str(tmp_path), "/dev/null"]
    argv.append(str(good))
    status, out, err = run_engine_media(capsys, monkeypatch, argv)
    assert status == 2  # refusals exit 2, also when another target was written
    assert f"written: {good}; refused: /dev/sdzz, {iso}, {tmp_path}, /dev/null" in err
    assert not sdzz.exists()
    assert good.read_bytes()[: iso.stat().st_size] == iso.read_bytes()
    assert error_lines(err) == [
        "error: refusing /dev/sdzz: no such device or file "
        "(a mistyped /dev/sdX must not create a file)",
        f"error: refusing {iso}: is the image file itself",
        f"error: refusing {tmp_path}: neither a block device nor a regular file",
        "error: refusing /dev/null: neither a block device nor a regular file",
    ]
    assert out.count("refused") == 4


def test_only_refused_targets_exit_2(
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(1 * MiB)
    status, out, err = run_engine_media(
        capsys, monkeypatch, ["usb", "write", str(iso), "/dev/sdzz"]
    )
    assert status == 2
    assert out == ""
    assert len(error_lines(err)) == 1
    assert "About to ERASE" not in err
    assert not Path("/dev/sdzz").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "No such file or directory"), (b"x" * 40000, "is not an ISO 9660 image")],
)
def test_the_image_must_be_an_iso(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    content: bytes | None,
    message: str,
) -> None:
    image = tmp_path / "engine.iso"
    if content is not None:
        image.write_bytes(content)
    stick = tmp_path / "stick.img"
    stick.touch()
    status, _, err = run_engine_media(
        capsys, monkeypatch, ["usb", "write", "--yes", str(image), str(stick)]
    )
    assert status == 2
    (line,) = error_lines(err)
    assert str(image) in line
    assert message in line


def test_verify_reports_the_first_bad_block(
    tmp_path: Path,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(6 * MiB)
    stick = tmp_path / "stick.img"
    stick.write_bytes(iso.read_bytes())
    status, out, _ = run_engine_media(capsys, monkeypatch, ["usb", "verify", str(iso), str(stick)])
    assert status == 0
    assert out.startswith(f"ok: {stick} matches {iso.name}")

    with open(stick, "r+b") as f:
        f.seek(5 * MiB + 700)
        f.write(b"\xff\x00")
    status, _, err = run_engine_media(capsys, monkeypatch, ["usb", "verify", str(iso), str(stick)])
    assert status == 1  # a failed check; 2 is reserved for bad input
    bad = (5 * MiB + 700) // 512 * 512
    assert error_lines(err) == [
        f"error: {stick} differs from the image at offset {bad} (5.0 MiB): first bad block"
    ]
    assert "hint: write it again" in err


def test_verify_refuses_what_write_refuses_with_the_same_words(
    tmp_path: Path,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(1 * MiB)
    for target, reason in [
        ("/dev/null", "neither a block device nor a regular file"),
        (str(tmp_path), "neither a block device nor a regular file"),
        (str(tmp_path / "missing.img"), "no such device or file"),
    ]:
        status, _, err = run_engine_media(capsys, monkeypatch, ["usb", "verify", str(iso), target])
        assert status == 2
        (line,) = error_lines(err)
        assert line.startswith(f"error: refusing {target}: {reason}"), line
        assert "hint:" in err


def test_list_json(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    status, out, _ = run_engine_media(capsys, monkeypatch, ["usb", "list", "--all", "--json"])
    assert status == 0
    disks = json.loads(out)
    assert isinstance(disks, list)
    for disk in disks:
        assert set(disk) >= {"path", "model", "serial", "size_bytes", "bus", "hidden"}
        if "/" in disk["holds"]:
            assert disk["hidden"], "the disk holding / must never be shown by default"
    status, out, _ = run_engine_media(capsys, monkeypatch, ["usb", "list", "--json"])
    assert all(not d["hidden"] for d in json.loads(out))


def test_a_file_smaller_than_the_image_is_refused(
    tmp_path: Path,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file target stands for a stick of its size: too small is refused, never grown."""
    iso = make_iso(2 * MiB)
    small = tmp_path / "small.img"
    small.write_bytes(bytes(1 * MiB))
    argv = ["usb", "write", "--yes", str(iso), str(small)]
    status, _, err = run_engine_media(capsys, monkeypatch, argv)
    assert status == 2
    (line,) = error_lines(err)
    assert line.startswith(f"error: refusing {small}: is smaller than the image")
    assert f"hint: create it at the stick's size first (e.g. truncate -s 8G {small})" in err
    assert small.read_bytes() == bytes(1 * MiB)


def test_two_names_of_one_file_are_one_target(
    tmp_path: Path,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A symbolic link, a hard link and `./x` for `x` name the same file: it is examined,
    shown and written once, and the other names are said to be the same target."""
    iso = make_iso(2 * MiB)
    stick = tmp_path / "stick.img"
    stick.write_bytes(bytes(4 * MiB))
    (tmp_path / "link.img").symlink_to(stick)
    os.link(stick, tmp_path / "hard.img")
    monkeypatch.chdir(tmp_path)
    names = ["stick.img", "./stick.img", str(tmp_path / "link.img"), "hard.img"]
    argv = ["usb", "write", "--yes", str(iso), *names]
    status, out, err = run_engine_media(capsys, monkeypatch, argv)
    assert status == 0, err
    assert [ln for ln in err.splitlines() if ln.startswith("  ")] == [
        "  stick.img  regular file, 4.0 MiB (0.0 GB)"
    ]
    for other in names[1:]:
        assert f"{Path(other)} is the same target as stick.img: it is written once" in err
    assert [ln.split()[0] for ln in out.splitlines() if "img" in ln] == ["stick.img"]
    assert stick.read_bytes()[: iso.stat().st_size] == iso.read_bytes()


def test_a_single_reason_stays_inline(
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(1 * MiB)
    argv = ["usb", "write", "--yes", str(iso), "/dev/sdzz"]
    status, _, err = run_engine_media(capsys, monkeypatch, argv)
    assert status == 2
    assert err.splitlines()[0].startswith("error: refusing /dev/sdzz: no such device or file")
    assert not any(line.startswith("  ") for line in err.splitlines())


def test_usb_write_not_confirmed_has_a_hint(
    make_iso: Callable[[int], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(1 * MiB)
    stick = tmp_path / "stick.img"
    with open(stick, "wb") as f:
        f.truncate(iso.stat().st_size)
    argv = ["usb", "write", str(iso), str(stick)]
    status, _, err = run_engine_media(capsys, monkeypatch, argv, stdin="no\n")
    assert status == 2
    assert error_lines(err) == ["error: not confirmed; nothing was written"]
    assert "hint: type 'yes' in full to erase the targets, or add --yes" in err.splitlines()
    assert stick.stat().st_blocks == 0  # still sparse: nothing was written
