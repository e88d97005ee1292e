"""The guide's update-kit path end to end: import the 5.0.0 ISO as a kit, a registered 4.5.0
computer checks in, the kit is assigned, the agent downloads and installs it and boots the
disk, and the Upgrade column ends Blank with the computer running 5.0.0 from slot B."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from disk_images.probe import Installation, probe
from disk_images.state import UpgradeStatus
from reference_builds.pytest_plugin import vm_disk_digests

from .conftest import RunningServer, agent, import_kit, registered_disk

pytestmark = [pytest.mark.root, pytest.mark.qemu, pytest.mark.slow]


def test_import_assign_agent_reboot_ends_blank_on_the_new_version(
    sync_server: RunningServer,
    sync_cli: Callable[..., tuple[int, str, str]],
    engine_medium: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = import_kit(sync_cli, engine_medium("5.0.0"))
    assert status == 0, err
    status, out, _ = sync_cli("token", "create", "--name", "test-pc")
    token = out.strip()
    disk = registered_disk(tmp_path / "pc.img", sync_server.url, token)
    before = vm_disk_digests(disk)

    assert agent("--once", "--cache", str(tmp_path / "cache"), str(disk)) == 0
    capsys.readouterr()
    status, out, _ = sync_cli("computers", "--json")
    (computer,) = json.loads(out)
    assert (computer["name"], computer["running_version"]) == ("test-pc", "4.5.0")
    assert len(computer["vms"]) == 4

    status, out, err = sync_cli("assign", "5.0.0", "--computer", str(computer["id"]))
    assert status == 0, err
    assert json.loads(sync_cli("computers", "--json")[1])[0]["assignments"][0]["status"] == (
        UpgradeStatus.PENDING.value
    )

    assert agent("--once", "--reboot", "--cache", str(tmp_path / "cache"), str(disk)) == 0
    lines = capsys.readouterr().out
    assert "Engine 5.0.0: Installed (Reboot Required) (slot B)" in lines
    (computer,) = json.loads(sync_cli("computers", "--json")[1])
    assert (computer["running_version"], computer["active_slot"]) == ("5.0.0", "B")
    (assignment,) = computer["assignments"]
    assert (assignment["status"], assignment["status_label"]) == ("", "Blank")
    found = probe(disk)
    assert isinstance(found, Installation)
    assert (found.version, found.active_slot.value if found.active_slot else None) == ("5.0.0", "B")
    assert found.upgrade_status is UpgradeStatus.BLANK
    assert vm_disk_digests(disk) == before
