"""Screen 5 shows the Synchronizer registration the disk really has: a disk registered
through the real fresh-install path, read by the real probe, converted by the API front end's
typed adapter. The token never reaches the screen."""

from __future__ import annotations

from pathlib import Path

import pytest

from disk_images.probe import Installation, probe
from disk_images.state import Registration, RegistrationMode
from enginekit.secret import Secret
from installer.engine import run_plan
from installer.frontends.api import Installer, load_medium, load_target
from installer.model import Screen
from installer.plan import InstallMode, InstallPlan

pytestmark = [pytest.mark.root]

SERVER = "sync.example.com:8443"
TOKEN = "t0ken-never-shown"


def test_screen_five_names_the_server_of_a_registered_disk(tmp_path: Path, iso: Path) -> None:
    from reference_builds.media import reference_iso

    disk = tmp_path / "registered.img"
    with disk.open("wb") as stream:
        stream.truncate(2 << 30)
    run_plan(
        InstallPlan(
            medium=reference_iso("4.5.0"),
            target=disk,
            mode=InstallMode.FRESH,
            target_version="4.5.0",
            keyboard="us",
            registration=Registration(RegistrationMode.SYNCHRONIZER, SERVER, Secret(TOKEN)),
            eula_accepted=True,
        )
    )
    found = probe(disk)
    assert isinstance(found, Installation)
    assert found.registration is not None
    assert found.registration.server == SERVER

    installer = Installer(load_medium(iso), load_target(disk), dry_run=True)
    installer.choose("install")
    installer.choose("next")
    installer.choose("accept")
    installer.next()  # keyboard: the disk's
    assert installer.screen is Screen.EXISTING
    text = installer.view.text
    assert f"Registered with Synchronizer ({SERVER})" in text
    assert TOKEN not in text
    assert TOKEN not in repr(installer.model.target)
