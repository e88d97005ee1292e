"""Examples from the README: the pytest-plugin example, kept here verbatim so it cannot go
stale, and the answer-file example."""

import subprocess
import sys
from pathlib import Path

import pytest

from reference_builds.pytest_plugin import vm_disk_digests

UPGRADE = '[eula]\naccept = true\n[keyboard]\nlayout = "us"\n[existing]\naction = "upgrade"\n'


@pytest.mark.root
def test_upgrade_keeps_every_vm_disk(engine_disk, engine_medium, tmp_path):  # type: ignore[no-untyped-def]
    disk = engine_disk("4.5.0", size="2G")  # a fresh reference disk with 4 VMs, yours to change
    iso = engine_medium("5.0.0")  # the cached reference medium (read-only)
    answers = tmp_path / "upgrade.toml"
    answers.write_text(UPGRADE)
    before = vm_disk_digests(disk)
    command = [sys.executable, "-m", "commands.engine_install", "--media", iso, "--target", disk]
    subprocess.run([*command, "--answers", answers], check=True)
    assert vm_disk_digests(disk) == before


def test_readme_answer_file_example_has_finish_reboot() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### `engine-install`")[1].split("\n### ")[0]
    assert "[finish]\nreboot = " in section
