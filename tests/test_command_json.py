"""`--json` on the commands a script calls: one JSON object on stdout, for a result and for a
failure alike (`error`, `hint`, `details`, `exit_status`), with the `error:`/`hint:` lines
still on stderr and nothing else on stdout."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from commands import engine_disk, engine_install, engine_media

Main = Callable[[list[str]], int]
ANSWERS = '[eula]\naccept = true\n[keyboard]\nlayout = "us"\n[registration]\nmode = "standalone"\n'


def _run(
    capsys: pytest.CaptureFixture[str], main: Main, *argv: object
) -> tuple[int, dict[str, Any], str]:
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:  # a usage error ends in argparse
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, json.loads(out), err  # fails unless stdout is exactly one JSON document


@pytest.fixture(scope="module")
def iso() -> Path:
    from reference_builds.media import reference_iso

    return reference_iso("5.0.0")


@pytest.fixture
def iso_copy(iso: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "engine.iso"
    shutil.copyfile(iso, copy)
    return copy


FAILURES: list[tuple[str, Main, tuple[str, ...]]] = [
    ("build", engine_media.main, ("build", "--payload", "{missing}", "-o", "{tmp}/out.iso")),
    ("inspect", engine_media.main, ("inspect", "{missing}")),
    ("verify", engine_media.main, ("verify", "{missing}")),
    ("md5-implant", engine_media.main, ("md5", "implant", "{missing}")),
    ("md5-check", engine_media.main, ("md5", "check", "{missing}")),
    ("usb-write", engine_media.main, ("usb", "write", "--yes", "{missing}", "{tmp}/stick")),
    ("usage", engine_media.main, ("inspect", "--no-such-option", "x.iso")),
    ("disk-inspect", engine_disk.main, ("inspect", "{missing}")),
    ("install-validate", engine_install.main, ("--validate", "{missing}")),
    ("install", engine_install.main, ("--media", "{missing}", "--target", "{tmp}/d.img")),
]


@pytest.mark.parametrize(("main", "argv"), [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES])
def test_a_failure_is_one_json_object_with_the_error(
    main: Main, argv: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = {"{missing}": str(tmp_path / "missing"), "{tmp}": str(tmp_path)}
    args = [values.get(a, a).replace("{tmp}", str(tmp_path)) for a in argv]
    status, doc, err = _run(capsys, main, *args, "--json")
    assert status == 2
    assert doc["exit_status"] == status
    assert doc["hint"]
    assert doc["details"] == []
    assert [line.split(":")[0] for line in err.splitlines()] == ["error", "hint"]
    assert err.splitlines()[0] == f"error: {doc['error']}"


def test_build_prints_what_it_built(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "engine.iso"
    status, doc, _ = _run(
        capsys, engine_media.main, "build", "--reference", "5.0.0", "-o", out, "--json"
    )
    assert status == 0
    assert doc["iso"] == str(out)
    assert doc["version"] == "5.0.0"
    assert doc["size_bytes"] == out.stat().st_size
    assert doc["volume_id"] == "ENGINE_5_0_0"


def test_md5_implant_and_check_print_the_sums(
    iso_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, implanted, _ = _run(
        capsys, engine_media.main, "md5", "implant", "--force", iso_copy, "--json"
    )
    assert status == 0
    assert implanted["iso"] == str(iso_copy)
    status, checked, _ = _run(capsys, engine_media.main, "md5", "check", iso_copy, "--json")
    assert status == 0
    assert checked["status"] == "pass"
    assert checked["expected"] == implanted["md5"]


def test_a_failed_md5_check_prints_what_it_found_with_the_error(
    iso_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with open(iso_copy, "r+b") as image:
        image.seek(20 * 2048 * 1024)  # inside the payload, far from the descriptors
        byte = image.read(1)
        image.seek(-1, os.SEEK_CUR)
        image.write(bytes([byte[0] ^ 0xFF]))
    status, doc, _ = _run(capsys, engine_media.main, "md5", "check", iso_copy, "--json")
    assert status == 1
    assert doc["status"] == "fail"
    assert doc["exit_status"] == 1
    assert "does not match" in doc["error"]


def test_verify_failure_carries_the_report_and_the_error(
    iso_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with open(iso_copy, "r+b") as image:
        image.seek(20 * 2048 * 1024)
        image.write(b"\xff" * 4096)
    status, doc, _ = _run(capsys, engine_media.main, "verify", iso_copy, "--json")
    assert status == 1
    assert doc["exit_status"] == 1
    assert "verification failed" in doc["error"]
    assert any(not check["ok"] for check in doc["checks"])


def test_usb_write_to_a_file_prints_each_target(
    iso: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stick = tmp_path / "stick.img"
    stick.write_bytes(b"")
    os.truncate(stick, iso.stat().st_size + 1024 * 1024)
    refused = tmp_path / "no-such-stick"
    status, doc, err = _run(
        capsys, engine_media.main, "usb", "write", "--yes", iso, stick, refused, "--json"
    )
    assert status == 2  # one target refused (exit 2 even though the other was written)
    by_target = {t["target"]: t for t in doc["targets"]}
    assert by_target[str(stick)]["status"] == "ok"
    assert by_target[str(stick)]["bytes_written"] == iso.stat().st_size
    assert by_target[str(refused)]["status"] == "refused"
    assert doc["exit_status"] == 2
    assert str(refused) in doc["error"]
    assert doc["hint"]
    assert err.count("error:") == 1


def test_usb_verify_prints_where_the_target_differs(
    iso: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stick = tmp_path / "stick.img"
    shutil.copyfile(iso, stick)
    status, doc, _ = _run(capsys, engine_media.main, "usb", "verify", iso, stick, "--json")
    assert status == 0
    assert doc["ok"] is True
    assert doc["bytes_checked"] == iso.stat().st_size
    with open(stick, "r+b") as target:
        target.seek(4096)
        target.write(b"\xff" * 512)
    status, doc, _ = _run(capsys, engine_media.main, "usb", "verify", iso, stick, "--json")
    assert status == 1
    assert doc["ok"] is False
    assert doc["first_bad_offset"] == 4096
    assert doc["exit_status"] == 1
    assert doc["error"]


def test_validate_prints_what_was_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = tmp_path / "fresh.toml"
    answers.write_text(ANSWERS)
    status, doc, _ = _run(capsys, engine_install.main, "--validate", answers, "--json")
    assert status == 0
    assert doc == {"answers": str(answers), "valid": True, "checked": "schema"}


def test_install_without_answers_refuses_json(
    iso: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The interactive screens need the terminal that stdout is: --json needs an answer file."""
    status, doc, _ = _run(
        capsys, engine_install.main, "--media", iso, "--target", tmp_path / "d.img", "--json"
    )
    assert status == 2
    assert "--answers" in doc["error"]


@pytest.mark.root
def test_install_prints_the_report(
    iso: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from disk_images.image import MIB, create_image

    disk = tmp_path / "disk.img"
    create_image(disk, 600 * MIB)
    answers = tmp_path / "fresh.toml"
    answers.write_text(ANSWERS)
    argv = ("--media", iso, "--target", disk, "--answers", answers, "--json")
    status, doc, err = _run(capsys, engine_install.main, *argv)
    assert status == 0, err
    assert doc["mode"] == "fresh"
    assert doc["installed_version"] == "5.0.0"
    assert doc["target"] == str(disk)
    assert doc["dry_run"] is False
    assert doc["slot"] in ("A", "B", "a", "b")
    assert doc["upgrade_status"] is not None
    assert "%]" in err  # the progress lines went to stderr, not into the JSON


@pytest.mark.parametrize(
    ("raised", "status"),
    [(KeyboardInterrupt(), 130), (ValueError("a bug"), 70)],
    ids=["ctrl-c", "bug"],
)
def test_an_interrupt_or_a_bug_is_a_json_error_too(
    raised: BaseException, status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from enginekit.cli import ArgumentParser, run_main

    parser = ArgumentParser(prog="t")
    parser.add_argument("--json", action="store_true")

    def handler(_args: argparse.Namespace) -> int:
        raise raised

    assert run_main(parser, handler, ["--json"]) == status
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["exit_status"] == status
    assert doc["hint"]
    assert [line.split(":")[0] for line in err.splitlines()] == ["error", "hint"]
