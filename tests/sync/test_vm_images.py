"""VM images over real agents on real disks: each image's Users tab (the guide's columns)
and why a user's running version differs from the assigned one; a VM published by a 5.0
server is not deployed to a 4.5 Engine; republishing after the server's upgrade gives shared
VMs the new PV drivers; custom and local VMs are listed for the guide's step 5."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from disk_images.probe import Installation, VmInfo, probe
from reference_builds.disk import add_sample_vms
from reference_builds.registered_disk import create_registered_disk
from sync_agent.daemon import checkin_request
from sync_agent.registration import read_identity

from .conftest import RunningServer, agent

pytestmark = [pytest.mark.root, pytest.mark.slow]

Cli = Callable[..., tuple[int, str, str]]


@dataclass(frozen=True)
class Fleet:
    """The server's console plus real agents on real disks in one test's directory."""

    server: RunningServer
    cli: Cli
    tmp: Path
    capsys: pytest.CaptureFixture[str]

    def agent(self, disk: Path, *options: str) -> int:
        status = agent("--once", "--cache", str(self.tmp / "cache"), *options, str(disk))
        self.capsys.readouterr()  # the agent's lines are not the next command's output
        return status

    def computer(self, name: str, version: str = "4.5.0", *, vms_for: str | None = None) -> Path:
        """A registered Engine `version` that checked in once; `vms_for`: its sample VMs
        published for that version instead (as on a computer upgraded before its server)."""
        token = self.cli("token", "create", "--name", name)[1].strip()
        disk = create_registered_disk(
            self.tmp / f"{name}.img",
            version,
            2 * 1024**3,
            self.server.url,
            token,
            with_vms=vms_for is None,
        )
        if vms_for is not None:
            add_sample_vms(disk, vms_for)
        assert self.agent(disk) == 0
        return disk

    def user(self, user: str, computer: str, *extra: str) -> None:
        for c in json.loads(self.cli("computers", "--json")[1]):
            if c["name"] == computer:
                assert self.cli("user", "add", user, "--computer", str(c["id"]), *extra)[0] == 0
                return
        raise AssertionError(computer)

    def row(self, image: str, user: str) -> dict[str, Any]:
        doc = json.loads(self.cli("vms", "--json")[1])
        (row,) = [r for r in doc["users"] if r["image"] == image and r["name"] == user]
        return dict(row)


@pytest.fixture
def fleet(
    sync_server: RunningServer, sync_cli: Cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Fleet:
    return Fleet(sync_server, sync_cli, tmp_path, capsys)


def _vm_on_disk(disk: Path, name: str) -> VmInfo:
    found = probe(disk)
    assert isinstance(found, Installation)
    (vm,) = [vm for vm in found.vms if vm.name == name]
    return vm


def test_the_users_tab_says_why_running_differs_until_the_vm_restarts(fleet: Fleet) -> None:
    disk = fleet.computer("pc1")
    fleet.user("alice", "pc1", "--full-name", "Alice Smith")
    assert fleet.cli("publish", "office-shared", "--user", "alice")[0] == 0
    row = fleet.row("office-shared", "alice")
    assert (row["assign"], row["staged"], row["full_name"]) == (True, False, "Alice Smith")
    assert (row["running_version"], row["assigned_version"]) == (None, 1)
    assert row["reason"] == "not checked in since the assignment"

    assert fleet.agent(disk) == 0
    assert fleet.row("office-shared", "alice")["reason"] == "waiting for the VM to restart"
    assert _vm_on_disk(disk, "office-shared").pending_version == 1

    assert fleet.agent(disk, "--restart-vms") == 0
    row = fleet.row("office-shared", "alice")
    assert (row["running_version"], row["assigned_version"], row["reason"]) == (1, 1, "")
    vm = _vm_on_disk(disk, "office-shared")
    assert (vm.image_version, vm.pending_version) == (1, None)
    out = fleet.cli("vms")[1]
    assert "Assign  Staged  Name   Full Name    Running Version  Assigned Version" in out


def test_a_version_the_computer_cannot_deploy_is_shown_failed_with_why(fleet: Fleet) -> None:
    disk = fleet.computer("pc1")
    fleet.user("bob", "pc1")
    assert fleet.cli("publish", "lab-local", "--kind", "shared", "--user", "bob")[0] == 0
    fleet.agent(disk, "--restart-vms")
    reason = fleet.row("lab-local", "bob")["reason"]
    assert reason.startswith("failed: a local VM named lab-local is installed on this computer")
    assert _vm_on_disk(disk, "lab-local").kind == "local"


def test_a_vm_published_by_a_5_0_server_is_not_deployed_to_a_4_5_engine(fleet: Fleet) -> None:
    old = fleet.computer("pc45", "4.5.0")
    new = fleet.computer("pc50", "5.0.0")
    fleet.user("ann", "pc45")
    fleet.user("ben", "pc50")
    assert fleet.cli("upgrade-server", "--to", "5.0.0", "--force")[0] == 0
    assert fleet.cli("publish", "office-shared", "--user", "ann", "ben")[0] == 0
    assert fleet.agent(old, "--restart-vms") == 0
    assert fleet.agent(new, "--restart-vms") == 0

    ann = fleet.row("office-shared", "ann")
    assert (ann["running_version"], ann["assigned_version"]) == (None, 1)
    assert ann["reason"] == "published by a 5.0 server; this Engine runs 4.5"
    untouched = _vm_on_disk(old, "office-shared")
    assert (untouched.image_version, untouched.published_for) == (None, "4.5.0")
    ben = fleet.row("office-shared", "ben")
    assert (ben["running_version"], ben["reason"]) == (1, "")
    assert _vm_on_disk(new, "office-shared").published_for == "5.0.0"


def test_republishing_after_the_server_upgrade_gives_shared_vms_the_new_pv_drivers(
    fleet: Fleet,
) -> None:
    disk = fleet.computer("pc1", "5.0.0", vms_for="4.5.0")
    fleet.user("alice", "pc1")
    assert fleet.cli("publish", "office-shared", "--user", "alice")[0] == 0
    fleet.agent(disk, "--restart-vms")
    assert _vm_on_disk(disk, "office-shared").pv_drivers == "4.5.0"
    assert fleet.cli("upgrade-server", "--to", "5.0.0")[0] == 0
    status, out, _ = fleet.cli("publish", "office-shared")
    assert status == 0
    assert "version 2" in out
    assert "PV drivers 5.0.0" in out
    assert "alice" in out
    fleet.agent(disk, "--restart-vms")
    vm = _vm_on_disk(disk, "office-shared")
    assert (vm.image_version, vm.pv_drivers, vm.published_for) == (2, "5.0.0", "5.0.0")
    assert fleet.row("office-shared", "alice")["reason"] == ""


def test_custom_and_local_vms_are_listed_for_a_manual_pv_driver_upgrade(fleet: Fleet) -> None:
    fleet.computer("pc1", "5.0.0", vms_for="4.5.0")
    doc = json.loads(fleet.cli("vms", "--json")[1])
    listed = {(m["vm"], m["kind"], m["pv_drivers"]) for m in doc["manual_pv_upgrades"]}
    assert listed == {("finance-custom", "custom", "4.5.0"), ("lab-local", "local", "4.5.0")}
    out = fleet.cli("vms")[1]
    assert "PV drivers to upgrade by hand (upgrade guide, step 5):" in out
    assert "finance-custom (custom VM) has PV drivers 4.5.0; its Engine runs 5.0.0" in out


def test_a_staged_version_goes_to_the_named_test_users_only(fleet: Fleet) -> None:
    fleet.computer("pc1")
    fleet.user("tess", "pc1")
    fleet.user("uma", "pc1")
    assert fleet.cli("publish", "office-shared", "--user", "tess", "uma")[0] == 0
    status, out, _ = fleet.cli("publish", "office-shared", "--staged", "--user", "tess")
    assert status == 0
    assert "version 2 (staged)" in out
    tess, uma = fleet.row("office-shared", "tess"), fleet.row("office-shared", "uma")
    assert (tess["assigned_version"], tess["staged"]) == (2, True)
    assert (uma["assigned_version"], uma["staged"]) == (1, False)


def test_vms_for_one_user_lists_only_that_user(fleet: Fleet) -> None:
    fleet.computer("pc1")
    fleet.user("tess", "pc1", "--full-name", "Tess Test")
    fleet.user("uma", "pc1")
    assert fleet.cli("publish", "office-shared", "--user", "tess", "uma")[0] == 0
    out = fleet.cli("vms", "--user", "tess")[1]
    assert "Tess Test" in out
    assert "uma" not in out


def test_a_computer_offered_the_version_that_has_not_reported_it_is_downloading(
    fleet: Fleet,
) -> None:
    disk = fleet.computer("pc1")
    fleet.user("alice", "pc1")
    assert fleet.cli("publish", "office-shared", "--user", "alice")[0] == 0
    # The agent's own check-in, stopped before it writes the VM: the offer is out.
    identity = read_identity(disk)
    with fleet.server.client(identity.token) as computer:
        body = checkin_request(identity.installation).model_dump()
        answer = computer.post("/api/v1/checkin", body)
    assert [(vm["name"], vm["version"]) for vm in answer["vms"]] == [("office-shared", 1)]
    assert fleet.row("office-shared", "alice")["reason"] == "downloading"


def test_a_name_that_cannot_be_a_vm_directory_is_refused(fleet: Fleet) -> None:
    status, _, err = fleet.cli("publish", "../escape")
    assert status == 2
    assert "is not a VM image name" in err.splitlines()[0]
    assert json.loads(fleet.cli("vms", "--json")[1])["users"] == []
