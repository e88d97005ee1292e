"""`engine-install --record-answers OUT`: what it records replays; it never overwrites an
existing file, above all not the `--answers` file itself (its token would be replaced by a
comment and replay would fail), not even with `--dry-run`; and a path that cannot be written (a
missing directory, a directory) is refused in one line before the first screen, not with an
internal error after the disk was changed. The real CLI, the real medium, a blank disk.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reference_builds.answer_files import FRESH_STANDALONE

from .conftest import engine_install


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "real"])
def test_record_to_the_answers_file_is_refused(
    tmp_path: Path, iso: Path, blank: Path, dry_run: bool
) -> None:
    answers = tmp_path / "sync.toml"
    answers.write_text(FRESH_STANDALONE)
    (tmp_path / "sub").mkdir()
    other_spelling = tmp_path / "sub" / ".." / "sync.toml"
    extra = ["--dry-run"] if dry_run else []
    status, out, err = engine_install(
        "--media", iso, "--target", blank, "--answers", answers,
        "--record-answers", other_spelling, *extra,
    )  # fmt: skip
    assert status == 2, err
    lines = err.splitlines()
    assert lines[0].startswith("error: ")
    assert "is the --answers file" in lines[0]
    assert lines[1].startswith("hint: ")
    assert out == ""
    assert answers.read_text() == FRESH_STANDALONE
    assert blank.stat().st_blocks == 0


def test_record_to_an_existing_file_is_refused_even_dry_run(
    tmp_path: Path, iso: Path, blank: Path
) -> None:
    answers = tmp_path / "fresh.toml"
    answers.write_text(FRESH_STANDALONE)
    existing = tmp_path / "old.toml"
    existing.write_text("# keep me\n")
    status, out, err = engine_install(
        "--media", iso, "--target", blank, "--answers", answers, "--dry-run",
        "--record-answers", existing,
    )  # fmt: skip
    assert status == 2, err
    assert err.splitlines()[0] == (
        f"error: {existing}: already exists; --record-answers never overwrites a file"
    )
    assert existing.read_text() == "# keep me\n"
    assert out == ""


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (lambda tmp: tmp / "missing" / "x.toml", "no such directory"),
        (lambda tmp: tmp, "is a directory"),
    ],
    ids=["missing-directory", "directory"],
)
def test_unwritable_record_path_refused_before_anything(
    tmp_path: Path, iso: Path, blank: Path, where: object, expected: str
) -> None:
    assert callable(where)
    out_path: Path = where(tmp_path)
    answers = tmp_path / "fresh.toml"
    answers.write_text(FRESH_STANDALONE)
    status, out, err = engine_install(
        "--media", iso, "--target", blank, "--answers", answers, "--record-answers", out_path
    )
    assert status == 2, err
    first = err.splitlines()[0]
    assert first.startswith(f"error: {out_path}: ")
    assert expected in first
    assert "internal error" not in err
    assert out == ""
    assert blank.stat().st_blocks == 0  # nothing written: the engine never ran


def test_recorded_answers_replay(tmp_path: Path, iso: Path, blank: Path) -> None:
    answers = tmp_path / "fresh.toml"
    answers.write_text(FRESH_STANDALONE)
    recorded = tmp_path / "recorded.toml"
    status, out, err = engine_install(
        "--media", iso, "--target", blank, "--answers", answers, "--dry-run",
        "--record-answers", recorded,
    )  # fmt: skip
    assert status == 0, err
    assert f"the dry run's answers recorded in {recorded}" in out
    assert blank.stat().st_blocks == 0  # a dry run writes nothing to the target
    text = recorded.read_text()
    assert 'layout = "us"' in text
    assert "[finish]" in text
    status, _, err = engine_install(
        "--media", iso, "--target", blank, "--answers", recorded, "--dry-run"
    )
    assert status == 0, err
