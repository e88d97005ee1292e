"""Staged rollouts on a real server: the test group first, then stages by percent of the
remaining targets; computers that cannot take the kit are skipped with the reason; pause
holds what was not yet offered, cancel withdraws it, what is in flight completes; a failure
pauses the rollout at its error threshold and the failed computer is offered the kit again
only after `assign --retry`. The first tests drive the server with the computers' own
protocol (check-ins over HTTP); the last ones run real agents on real 4.5.0 disk images.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from commands import engine_sync
from disk_images.boot import STOP_SEAM
from disk_images.probe import Installation, probe
from disk_images.session import open_installation
from disk_images.state import UpgradeStatus

from .conftest import RunningServer, agent, import_kit, registered_disk

Cli = Callable[..., tuple[int, str, str]]


@dataclass
class Speaker:
    """One computer speaking the check-in protocol with its own token (no disk)."""

    server: RunningServer
    token: str
    version: str = "4.5.0"
    id: int = 0

    def check_in(self, status: UpgradeStatus = UpgradeStatus.BLANK) -> dict[str, Any] | None:
        with self.server.client(self.token) as client:
            body = {"version": self.version, "upgrade_status": status.value}
            answer = client.post("/api/v1/checkin", body)
        self.id = int(answer["computer_id"])
        offer: dict[str, Any] | None = answer["update"]
        return offer

    def report(self, offer: dict[str, Any], status: UpgradeStatus, detail: str = "") -> None:
        with self.server.client(self.token) as client:
            path = f"/api/v1/assignments/{offer['assignment_id']}/status"
            client.post(path, {"status": status.value, "detail": detail})

    def upgrade(self, offer: dict[str, Any]) -> None:
        """What a committed upgrade looks like from the server: Installed, Blank, new version."""
        self.report(offer, UpgradeStatus.INSTALLED_REBOOT_REQUIRED, "slot B")
        self.report(offer, UpgradeStatus.BLANK, "running in slot B")
        self.version = offer["version"]
        self.check_in()


def _speakers(server: RunningServer, cli: Cli, *versions: str) -> list[Speaker]:
    speakers = []
    for index, version in enumerate(versions):
        token = cli("token", "create", "--name", f"pc{index}")[1].strip()
        speaker = Speaker(server, token, version)
        speaker.check_in()
        speakers.append(speaker)
    return speakers


def _rollout(cli: Cli, *args: str) -> dict[str, Any]:
    status, out, err = cli("rollout", *args, "--json")
    assert status == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def _create(cli: Cli, test: list[Speaker], stages: str, *extra: str) -> dict[str, Any]:
    test_group = ",".join(str(s.id) for s in test)
    return _rollout(cli, "create", "5.0.0", "--test-group", test_group, "--stages", stages, *extra)


def _outcomes(rollout: dict[str, Any]) -> dict[int, str]:
    return {t["computer_id"]: t["outcome"] for t in rollout["targets"]}


def test_targets_that_cannot_take_the_kit_are_skipped_with_the_reason(
    sync_server: RunningServer, sync_cli: Cli, engine_medium: Callable[[str], Path]
) -> None:
    assert import_kit(sync_cli, engine_medium("5.0.0"))[0] == 0
    test, old, new, a, b = _speakers(
        sync_server, sync_cli, "4.5.0", "4.0.0", "5.0.0", "4.5.0", "4.5.0"
    )
    args = ("--success-threshold", "100%", "--error-threshold", "50%")
    rollout = _create(sync_cli, [test], "50%,100%", *args)
    assert [(s["name"], s["members"]) for s in rollout["stages"]] == [
        ("test group", 1),
        ("stage 1", 1),
        ("stage 2", 1),
    ]
    notes = {t["computer_id"]: t["note"] for t in rollout["targets"] if t["skipped"]}
    assert notes == {
        old.id: "Engine 4.0.0 cannot upgrade to 5.0.0 directly: 4.5.0 is a barrier; "
        "assign the 4.5.0 kit first",
        new.id: "the computer already runs Engine 5.0.0",
    }
    assert _outcomes(rollout) == {
        test.id: "pending",
        a.id: "waiting",
        b.id: "waiting",
        old.id: "skipped",
        new.id: "skipped",
    }
    text = sync_cli("rollout", "status", str(rollout["id"]))[1]
    assert f"computer {old.id} (pc1), skipped: Engine 4.0.0 cannot upgrade" in text

    status, _, err = sync_cli(
        "rollout", "create", "5.0.0", "--test-group", str(old.id), "--stages", "100%", *args
    )
    assert status == 2
    assert "the test group cannot take Engine 5.0.0" in err
    assert f"computer {old.id} (pc1): Engine 4.0.0 cannot upgrade to 5.0.0 directly" in err


def test_stages_follow_the_test_group_pause_holds_and_cancel_withdraws(
    sync_server: RunningServer, sync_cli: Cli, engine_medium: Callable[[str], Path]
) -> None:
    assert import_kit(sync_cli, engine_medium("5.0.0"))[0] == 0
    test, a, b = _speakers(sync_server, sync_cli, "4.5.0", "4.5.0", "4.5.0")
    args = ("--success-threshold", "100", "--error-threshold", "50")
    rollout = _create(sync_cli, [test], "100%", *args)
    number = str(rollout["id"])
    assert a.check_in() is None  # stage 1 waits for the test group
    offer = test.check_in()
    assert offer is not None
    test.upgrade(offer)
    rollout = _rollout(sync_cli, "status", number)
    assert (rollout["state"], rollout["stage"]) == ("running", 1)
    assert _outcomes(rollout) == {test.id: "succeeded", a.id: "pending", b.id: "pending"}

    assert _rollout(sync_cli, "pause", number)["reason"] == "paused by the operator"
    assert a.check_in() is None  # held while paused
    assert _rollout(sync_cli, "resume", number)["state"] == "running"
    in_flight = a.check_in()
    assert in_flight is not None

    cancelled = _rollout(sync_cli, "cancel", number)
    assert cancelled["state"] == "cancelled"
    assert _outcomes(cancelled)[b.id] == "not offered"
    assert b.check_in() is None
    a.upgrade(in_flight)  # what was in flight completes
    assert _outcomes(_rollout(sync_cli, "status", number))[a.id] == "succeeded"
    status, _, err = sync_cli("rollout", "resume", number)
    assert (status, err.splitlines()[0]) == (
        2,
        f"error: server refused (409): rollout {number}: cannot resume: "
        "the rollout is already cancelled",
    )


def test_a_failure_pauses_at_the_error_threshold_and_is_offered_again_only_on_retry(
    sync_server: RunningServer, sync_cli: Cli, engine_medium: Callable[[str], Path]
) -> None:
    assert import_kit(sync_cli, engine_medium("5.0.0"))[0] == 0
    test, other, a = _speakers(sync_server, sync_cli, "4.5.0", "4.5.0", "4.5.0")
    args = ("--success-threshold", "50%", "--error-threshold", "50%")
    rollout = _create(sync_cli, [test, other], "100%", *args)
    offer = test.check_in()
    assert offer is not None
    test.report(offer, UpgradeStatus.FAILED, "reverted to 4.5.0 after a failed boot")
    rollout = _rollout(sync_cli, "status", str(rollout["id"]))
    assert (rollout["state"], rollout["reason"]) == (
        "paused",
        "test group: 1 of 2 failed (50%), error threshold 50%",
    )
    assert a.check_in() is None
    assert test.check_in(UpgradeStatus.FAILED) is None

    status, _, err = sync_cli("assign", "5.0.0", "--computer", str(test.id))
    assert status == 2
    assert (
        f"computer {test.id} (pc0): Engine 5.0.0 failed there (reverted to 4.5.0 after a failed "
        f"boot); it is offered again only with engine-sync assign 5.0.0 --retry --computer "
        f"{test.id}"
    ) in err
    assert sync_cli("assign", "5.0.0", "--retry", "--computer", str(test.id))[0] == 0
    again = test.check_in(UpgradeStatus.FAILED)
    assert again is not None
    assert again["status"] == "Signalled"
    assert _outcomes(_rollout(sync_cli, "status", str(rollout["id"])))[test.id] == "in flight"


def test_the_rollout_endpoints_are_in_the_openapi_document(sync_server: RunningServer) -> None:
    with sync_server.admin() as admin:
        paths = admin.get("/openapi.json")["paths"]
    assert {path: sorted(paths[path]) for path in paths if path.startswith("/api/v1/rollouts")} == {
        "/api/v1/rollouts": ["get", "post"],
        "/api/v1/rollouts/{rollout_id}": ["get"],
        "/api/v1/rollouts/{rollout_id}/cancel": ["post"],
        "/api/v1/rollouts/{rollout_id}/pause": ["post"],
        "/api/v1/rollouts/{rollout_id}/resume": ["post"],
    }


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--stages", "30%,half", "argument --stages: stage 'half' is not a count (3) or a percent"),
        ("--stages", "120%", "argument --stages: stage '120%': a count above 0, or a percent"),
        ("--test-group", "1,x", "argument --test-group: '1,x' is not a list of computer ids"),
        ("--error-threshold", "150%", "argument --error-threshold: '150%': a percent from 0%"),
    ],
)
def test_a_bad_rollout_option_is_one_error_line_before_the_server_is_asked(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    options = {
        "--test-group": "1",
        "--stages": "100%",
        "--success-threshold": "100",
        "--error-threshold": "50",
    }
    options[option] = value
    argv = ["rollout", "create", "5.0.0", *(p for kv in options.items() for p in kv)]
    server = ("--server", "http://127.0.0.1:9", "--token", "unused")
    with pytest.raises(SystemExit) as exited:
        engine_sync.main([*argv, *server])
    assert exited.value.code == 2
    first, hint = capsys.readouterr().err.splitlines()
    assert first.startswith(f"error: engine-sync rollout create: {message}")
    assert hint == "hint: see 'engine-sync rollout create --help'"


# --- real agents on real disk images -----------------------------------------------


def _disks(server: RunningServer, cli: Cli, tmp_path: Path, count: int) -> list[Path]:
    disks = []
    for index in range(count):
        token = cli("token", "create", "--name", f"pc{index}")[1].strip()
        disks.append(registered_disk(tmp_path / f"pc{index}.img", server.url, token))
    return disks


def _ids_by_name(cli: Cli) -> dict[str, int]:
    return {c["name"]: c["id"] for c in json.loads(cli("computers", "--json")[1])}


def _installation(disk: Path) -> Installation:
    found = probe(disk)
    assert isinstance(found, Installation), found
    return found


@pytest.mark.root
@pytest.mark.qemu
@pytest.mark.slow
def test_a_rollout_over_real_disks_reaches_done(
    sync_server: RunningServer,
    sync_cli: Cli,
    engine_medium: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert import_kit(sync_cli, engine_medium("5.0.0"))[0] == 0
    disks = _disks(sync_server, sync_cli, tmp_path, 2)
    cache = str(tmp_path / "cache")
    assert agent("--once", "--jobs", "2", "--cache", cache, *map(str, disks)) == 0
    capsys.readouterr()
    ids = _ids_by_name(sync_cli)
    rollout = _rollout(
        sync_cli,
        "create",
        "5.0.0",
        "--test-group",
        str(ids["pc0"]),
        "--stages",
        "100%",
        "--success-threshold",
        "100%",
        "--error-threshold",
        "50%",
    )
    seen = []
    for _ in range(3):  # each round: every disk checks in once, upgrading if Signalled
        # One disk at a time, with room for a slow boot: TCG on a loaded machine.
        round_args = ("--once", "--reboot", "--jobs", "1", "--timeout", "600", "--cache", cache)
        assert agent(*round_args, *map(str, disks)) == 0
        capsys.readouterr()
        rollout = _rollout(sync_cli, "status", str(rollout["id"]))
        seen.append((rollout["state"], rollout["stage"]))
        if rollout["state"] == "done":
            break
    assert seen[-1] == ("done", 1)
    assert [s["succeeded"] for s in rollout["stages"]] == [1, 1]
    for disk in disks:
        found = _installation(disk)
        assert (found.version, found.upgrade_status) == ("5.0.0", UpgradeStatus.BLANK)


@pytest.mark.root
@pytest.mark.qemu
@pytest.mark.slow
def test_a_new_slot_that_fails_its_first_boot_fails_the_computer_and_pauses_the_rollout(
    sync_server: RunningServer,
    sync_cli: Cli,
    engine_medium: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert import_kit(sync_cli, engine_medium("5.0.0"))[0] == 0
    test_disk, other_disk = _disks(sync_server, sync_cli, tmp_path, 2)
    cache = str(tmp_path / "cache")
    assert agent("--once", "--cache", cache, str(test_disk), str(other_disk)) == 0
    capsys.readouterr()
    ids = _ids_by_name(sync_cli)
    test_id, other_id = ids["pc0"], ids["pc1"]
    rollout = _rollout(
        sync_cli,
        "create",
        "5.0.0",
        "--test-group",
        str(test_id),
        "--stages",
        "100%",
        "--success-threshold",
        "100%",
        "--error-threshold",
        "100%",
    )
    assert agent("--once", "--cache", cache, str(test_disk)) == 0  # installed, not booted
    capsys.readouterr()
    with open_installation(test_disk) as session:  # the new slot cannot boot
        session.esp.write_atomic("/engine/b/initrd.img", b"not an initramfs\n" * 512)
    reboot = ("--once", "--reboot", "--timeout", "600", "--cache", cache)
    assert agent(*reboot, str(test_disk), str(other_disk)) == 1
    capsys.readouterr()

    rollout = _rollout(sync_cli, "status", str(rollout["id"]))
    assert (rollout["state"], rollout["reason"]) == (
        "paused",
        "test group: 1 of 1 failed (100%), error threshold 100%",
    )
    (failed,) = [t for t in rollout["targets"] if t["computer_id"] == test_id]
    assert (failed["status_label"], failed["detail"]) == (
        "Failed",
        "reverted to 4.5.0 after a failed boot",
    )
    assert _outcomes(rollout)[other_id] == "waiting"
    found = _installation(test_disk)
    assert (found.version, found.upgrade_status) == ("4.5.0", UpgradeStatus.FAILED)
    # Checking in again, the failed computer is not offered the kit, nor is the next stage.
    assert agent("--once", "--cache", cache, str(test_disk), str(other_disk)) == 0
    assert "Signalled" not in capsys.readouterr().out
    assert _installation(other_disk).upgrade_status is UpgradeStatus.BLANK


@pytest.mark.root
@pytest.mark.qemu
@pytest.mark.slow
def test_a_boot_stopped_by_its_timeout_is_not_a_failure(
    sync_server: RunningServer,
    sync_cli: Cli,
    engine_medium: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert import_kit(sync_cli, engine_medium("5.0.0"))[0] == 0
    (disk,) = _disks(sync_server, sync_cli, tmp_path, 1)
    cache = str(tmp_path / "cache")
    assert agent("--once", "--cache", cache, str(disk)) == 0
    capsys.readouterr()
    ids = _ids_by_name(sync_cli)
    args = ("--success-threshold", "100", "--error-threshold", "100")
    number = str(
        _rollout(
            sync_cli, "create", "5.0.0", "--test-group", str(ids["pc0"]), "--stages", "1", *args
        )["id"]
    )
    monkeypatch.setenv(STOP_SEAM, "timeout")  # the boot stops as a timeout would
    assert agent("--once", "--reboot", "--cache", cache, str(disk)) == 1
    assert "still Installed (Reboot Required)" in capsys.readouterr().out
    rollout = _rollout(sync_cli, "status", number)
    assert (rollout["state"], _outcomes(rollout)[ids["pc0"]]) == ("running", "in flight")
    # The disk is as any installed, not yet booted computer: its next boot decides.
    assert _installation(disk).upgrade_status is UpgradeStatus.INSTALLED_REBOOT_REQUIRED
