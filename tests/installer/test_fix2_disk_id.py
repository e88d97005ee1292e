"""Review fix: the erase confirmation is checked again by the engine, under its disk lock.

`InstallPlan.expected_disk_id` carries the id the user confirmed; the engine compares it with
its own probe taken while it holds the disk exclusively. An erase of a disk with data and no
id, or with the id of a disk that has changed since, is refused and nothing is written; the
confirmed id of this very disk goes through. Real medium, real images, real probe.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from disk_images.probe import Installation, NoInstallation, probe
from installer.engine import run_plan
from installer.engine.refusals import Refused
from installer.plan import InstallMode, InstallPlan, Registration, RegistrationMode


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _data_disk(path: Path) -> Path:
    """Someone's disk: no partition table, some bytes near the start."""
    with path.open("wb") as stream:
        stream.truncate(512 << 20)
        stream.seek(4096)
        stream.write(b"someone's data")
    return path


def _erase(iso: Path, disk: Path, expected: str | None) -> InstallPlan:
    return InstallPlan(
        medium=iso,
        target=disk,
        mode=InstallMode.ERASE,
        target_version="5.0.0",
        keyboard="de",
        registration=Registration(RegistrationMode.STANDALONE),
        eula_accepted=True,
        expected_disk_id=expected,
    )


def test_erase_without_or_with_a_stale_id_is_refused(tmp_path: Path, iso: Path) -> None:
    disk = _data_disk(tmp_path / "disk.img")
    found = probe(disk)
    assert isinstance(found, NoInstallation) and found.disk_id is not None
    assert found.disk_id.startswith("data-")
    before = _sha256(disk)
    with pytest.raises(Refused, match="an erase needs the disk id") as caught:
        run_plan(_erase(iso, disk, None))
    assert found.disk_id in caught.value.message
    # Confirmed, then the disk changed (another image copied over it) before the run.
    confirmed = found.disk_id
    with disk.open("r+b") as stream:
        stream.seek(4096)
        stream.write(b"other data!!!!")
    changed = _sha256(disk)
    with pytest.raises(Refused, match="the disk changed since it was confirmed"):
        run_plan(_erase(iso, disk, confirmed))
    assert _sha256(disk) == changed != before
    # The file name is not an id.
    with pytest.raises(Refused, match="the disk changed since it was confirmed"):
        run_plan(_erase(iso, disk, disk.name))
    assert _sha256(disk) == changed


@pytest.mark.root
def test_erase_with_the_confirmed_id_goes_through(tmp_path: Path, iso: Path) -> None:
    disk = _data_disk(tmp_path / "disk.img")
    found = probe(disk)
    run_plan(_erase(iso, disk, found.disk_id))
    after = probe(disk)
    assert isinstance(after, Installation) and after.version == "5.0.0"


def test_the_screens_put_the_confirmed_id_in_the_plan(tmp_path: Path, iso: Path) -> None:
    from installer.frontends.api import Installer, load_medium, load_target

    disk = _data_disk(tmp_path / "disk.img")
    target = load_target(disk)
    installer = Installer(load_medium(iso), target, engine=lambda plan, progress: None)  # type: ignore[arg-type,return-value]
    for choice in ("install", "next", "accept", "us"):
        installer.choose(choice)
    assert target.disk_id is not None and target.disk_id.startswith("data-")
    installer.choose("erase", confirm_erase=target.disk_id)
    plan = installer.model.to_plan()
    assert plan.mode is InstallMode.ERASE and plan.expected_disk_id == target.disk_id
