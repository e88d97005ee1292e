"""New-user finding: a dry run said "nothing written" twice, and an upgrade plan said
`keyboard: keep what the disk has` then `Keyboard: us`. Now one "nothing was written" line and
both name the kept layout; the README's answer-file example has `[finish] reboot`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from enginekit.process import run

UPGRADE = '[eula]\naccept = true\n[existing]\naction = "upgrade"\n'
FRESH = '[eula]\naccept = true\n[keyboard]\nlayout = "us"\n[registration]\nmode = "standalone"\n'


def dry_run(tmp_path: Path, iso: Path, disk: Path, text: str) -> str:
    answers = tmp_path / "answers.toml"
    answers.write_text(text)
    proc = run(
        [sys.executable, "-m", "commands.engine_install",
             "--media", str(iso), "--target", str(disk),
         "--answers", str(answers), "--dry-run"],
        check=False,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def test_fresh_dry_run_says_nothing_was_written_once(
    tmp_path: Path, iso: Path, blank: Path
) -> None:
    out = dry_run(tmp_path, iso, blank, FRESH)
    assert out.count("nothing was written") == 1 and "nothing written" not in out, out


@pytest.mark.root
def test_upgrade_plan_names_the_kept_keyboard_consistently(
    tmp_path: Path, iso: Path, engine_disk
) -> None:  # type: ignore[no-untyped-def]
    disk = engine_disk("4.5.0", size="2G", with_vms=False)
    out = dry_run(tmp_path, iso, disk, UPGRADE)
    assert "keep what the disk has" not in out.split("registration:")[0], out
    plan_line = next(line for line in out.splitlines() if line.startswith("keyboard: "))
    layout = plan_line.removeprefix("keyboard: ").removesuffix(" (kept from the disk)")
    assert plan_line.endswith("(kept from the disk)"), out
    assert f"Keyboard: {layout} (kept from the disk)" in out, out


def test_readme_answer_file_example_has_finish_reboot() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### `engine-install`")[1].split("\n### ")[0]
    assert "[finish]\nreboot = " in section
