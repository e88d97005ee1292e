"""`engine-install` as a user runs it: validation exit codes, dry runs that write nothing,
refusals in one line, and a clear error instead of a prompt when there is no terminal.

These run the real command (`python -m commands.engine_install`) against the real reference 5.0.0
ISO and real disk images; a blank target needs nothing else, Engine targets need the install
engine's reference disks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reference_builds.disk import create_reference_disk
from reference_builds.pytest_plugin import sparse_digest

from .conftest import engine_install

FRESH = """\
[eula]
accept = true
[keyboard]
layout = "de"
[registration]
mode = "standalone"
"""


def test_validate_schema_only(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(FRESH)
    assert engine_install("--validate", good)[:2] == (
        0,
        f"{good}: valid (schema only; add --media and --target to check the run)\n",
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("[eula]\naccept = 'yes'\n[keyboard]\nlayout = 1\nfoo = 2\n")
    status, out, err = engine_install("--validate", bad)
    assert status == 2
    assert out == ""
    assert err.splitlines() == [
        f"error: {bad}: 3 problems",
        "  eula.accept: must be true or false, not a string",
        "  keyboard.layout: must be a string, not an integer",
        "  keyboard.foo: unknown key; known keys are layout",
        "hint: fix the answer file; check it with engine-install --validate",
    ]


def test_validate_against_media_and_target(tmp_path: Path, iso: Path, blank: Path) -> None:
    answers = tmp_path / "a.toml"
    answers.write_text(FRESH)
    status, out, _ = engine_install("--validate", answers, "--media", iso, "--target", blank)
    assert status == 0
    assert "valid for" in out
    answers.write_text('[eula]\naccept = true\n[keyboard]\nlayout = "xx"\n')
    status, _, err = engine_install("--validate", answers, "--media", iso, "--target", blank)
    assert status == 2
    assert "missing answers for this run (blank target): registration.mode" in err
    assert "keyboard.layout: 'xx' is not a known layout; choose one of us, uk, de" in err
    status, _, err = engine_install("--validate", answers, "--media", iso)
    assert status == 2
    assert err.startswith("error: --validate checks a run only with both")


def test_dry_run_refuses_what_the_real_run_would(tmp_path: Path, iso: Path) -> None:
    small = tmp_path / "small.img"
    with small.open("wb") as stream:
        stream.truncate(64 << 20)
    answers = tmp_path / "a.toml"
    answers.write_text(FRESH)
    status, out, err = engine_install(
        "--media", iso, "--target", small, "--answers", answers, "--dry-run"
    )
    assert status == 2
    assert "too small" in err.splitlines()[0]
    assert out == ""


def test_dry_run_writes_nothing(tmp_path: Path, iso: Path, blank: Path) -> None:
    answers = tmp_path / "a.toml"
    answers.write_text(FRESH)
    before = sparse_digest(blank)
    status, out, err = engine_install(
        "--media", iso, "--target", blank, "--answers", answers, "--dry-run"
    )
    assert status == 0, err
    assert "dry run: this is the plan; nothing was written to the target" in out
    assert "mode: fresh" in out
    assert "keyboard: de" in out
    assert sparse_digest(blank) == before


def test_no_terminal_is_an_error_not_a_hanging_prompt(iso: Path, blank: Path) -> None:
    status, out, err = engine_install("--media", iso, "--target", blank)
    assert status == 2
    assert out == ""
    assert err.splitlines() == [
        "error: the interactive installer needs a terminal",
        "hint: run it in a terminal, or give an answer file with --answers FILE",
    ]


def test_missing_files_are_one_line(tmp_path: Path, iso: Path, blank: Path) -> None:
    status, _, err = engine_install(
        "--media", iso, "--target", blank, "--answers", tmp_path / "none.toml"
    )
    assert status == 2
    assert err.startswith(f"error: {tmp_path / 'none.toml'}: no such answer file")
    status, _, err = engine_install("--media", iso, "--target", tmp_path / "none.img")
    assert status == 2
    assert "no such target disk" in err
    assert "Traceback" not in err


def test_declined_eula_writes_nothing(tmp_path: Path, iso: Path, blank: Path) -> None:
    answers = tmp_path / "a.toml"
    answers.write_text(FRESH.replace("accept = true", "accept = false"))
    before = sparse_digest(blank)
    status, _, err = engine_install("--media", iso, "--target", blank, "--answers", answers)
    assert status == 2
    assert "the licence was declined; nothing was written" in err
    assert sparse_digest(blank) == before


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.parametrize(
    ("installed", "expected"),
    [("4.0.0", "upgrade 4.0.0 to 4.5.0 first")],
)
def test_refusal_is_one_line_and_disk_unchanged(
    tmp_path: Path, iso: Path, installed: str, expected: str
) -> None:
    disk = tmp_path / f"engine-{installed}.img"
    create_reference_disk(disk, installed, 1 << 30)
    answers = tmp_path / "a.toml"
    answers.write_text('[eula]\naccept = true\n[existing]\naction = "upgrade"\n')
    before = sparse_digest(disk)
    status, out, err = engine_install("--media", iso, "--target", disk, "--answers", answers)
    assert status == 2
    assert out == ""
    assert err.splitlines()[0].startswith("error: ")
    assert expected in err.splitlines()[0]
    assert len(err.splitlines()) == 2
    assert err.splitlines()[1].startswith("hint: ")
    assert sparse_digest(disk) == before


def test_target_too_small_is_refused_in_one_line(tmp_path: Path, iso: Path) -> None:
    small = tmp_path / "small.img"
    with small.open("wb") as stream:
        stream.truncate(64 << 20)
    answers = tmp_path / "a.toml"
    answers.write_text(FRESH)
    before = sparse_digest(small)
    status, _, err = engine_install("--media", iso, "--target", small, "--answers", answers)
    assert status == 2, err
    lines = err.splitlines()
    assert lines[0].startswith("error: ")
    assert "small" in lines[0]
    assert len(lines) == 2
    assert lines[1].startswith("hint: ")
    assert sparse_digest(small) == before


@pytest.mark.root
@pytest.mark.slow
def test_erase_needs_the_disk_id_that_inspect_shows(tmp_path: Path, iso: Path) -> None:
    from disk_images.probe import Installation, probe

    disk = tmp_path / "engine-4.0.0.img"
    create_reference_disk(disk, "4.0.0", 1 << 30)
    found = probe(disk)
    assert isinstance(found, Installation)
    assert found.disk_id.startswith("mbr-")
    answers = tmp_path / "a.toml"
    answers.write_text(FRESH + '[existing]\naction = "erase"\nconfirm_erase = "mbr-00000000"\n')
    before = sparse_digest(disk)
    status, _, err = engine_install("--media", iso, "--target", disk, "--answers", answers)
    assert status == 2
    assert f"existing.confirm_erase: to erase, confirm with the disk id '{found.disk_id}'" in err
    assert sparse_digest(disk) == before
    answers.write_text(answers.read_text().replace("mbr-00000000", found.disk_id))
    status, out, err = engine_install("--media", iso, "--target", disk, "--answers", answers)
    assert status == 0, err
    assert "Engine 5.0.0 installed" in out
    after = probe(disk)
    assert isinstance(after, Installation)
    assert after.version == "5.0.0"
    assert after.keyboard == "de"
    assert after.vms == ()
