"""The installer never installs over its own medium: `--target` that is the `--media` file,
a symbolic link or a hard link to it, is refused in one line naming both, exit 2, the medium
byte for byte unchanged; the dry run and --validate refuse it too. The same identity check
(`enginekit.identity`) serves `usb write`."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from commands.engine_install import main
from disk_images.probe import probe
from enginekit.identity import MediumRelation, medium_relation


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _erase_answers(tmp_path: Path, disk_id: str | None) -> Path:
    """What a user who confirmed the erase types: the answers that would wipe the target."""
    answers = tmp_path / "erase.toml"
    answers.write_text(
        '[eula]\naccept = true\n[keyboard]\nlayout = "us"\n'
        f'[existing]\naction = "erase"\nconfirm_erase = "{disk_id}"\n'
        '[registration]\nmode = "standalone"\n'
    )
    return answers


def _target(medium: Path, how: str) -> Path:
    if how == "same path":
        return medium
    other = medium.with_name(f"target-{how.replace(' ', '-')}.img")
    if how == "symlink":
        other.symlink_to(medium)
    else:
        os.link(medium, other)
    return other


@pytest.mark.parametrize("dry_run", [False, True], ids=["real", "dry-run"])
@pytest.mark.parametrize("how", ["same path", "symlink", "hard link"])
def test_the_medium_is_refused_as_target(
    iso: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str, dry_run: bool
) -> None:
    medium = tmp_path / "engine.iso"
    shutil.copyfile(iso, medium)  # a private copy: the old code erased it
    before = _digest(medium)
    target = _target(medium, how)
    answers = _erase_answers(tmp_path, probe(medium).disk_id)
    argv = ["--media", str(medium), "--target", str(target), "--answers", str(answers)]
    assert main([*argv, *(["--dry-run"] if dry_run else [])]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        f"error: {target}: is the medium itself ({medium}); installing would erase the "
        "installer medium; nothing was written"
    )
    assert err[1].startswith("hint: ")
    assert _digest(medium) == before


def test_validate_refuses_the_medium_as_target(
    iso: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = _erase_answers(tmp_path, "whatever")
    assert main(["--validate", str(answers), "--media", str(iso), "--target", str(iso)]) == 2
    assert "is the medium itself" in capsys.readouterr().err.splitlines()[0]


@pytest.mark.root
def test_a_loop_device_over_the_medium_is_the_medium(iso: Path) -> None:
    from disk_images.loop import LoopDevice

    with LoopDevice(iso, read_only=True) as loop:
        assert medium_relation(loop.device, iso) is MediumRelation.LOOP_OVER_MEDIUM
        assert medium_relation(iso, loop.device) is MediumRelation.BEHIND_MEDIUM_LOOP
