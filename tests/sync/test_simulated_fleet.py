"""Simulated computers: the real check-in protocol with no disk, outcomes from a seeded
distribution on a simulated clock; a fleet mixes them with real computers (disk images)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from disk_images.state import UpgradeStatus
from sync_agent.simulated import FleetOptions, Outcomes, SimulatedFleet

from .conftest import RunningServer, agent, import_kit, registered_disk

# Failures frequent enough that two seeds differ among 10 computers (seeds 7 and 8 do: the
# outcomes depend on the seed alone, so this holds on every run).
SHAKY = Outcomes(download_failure=0.1, install_failure=0.1, boot_fallback=0.2)
# Simulated seconds between check-ins: longer than a download, an install and a reboot take
# together (Outcomes' defaults), so each computer upgrades within two intervals.
INTERVAL = 600.0


def _assign(sync_cli: Callable[..., tuple[int, str, str]], ids: list[int]) -> None:
    status, _, err = sync_cli("assign", "5.0.0", "--computer", *map(str, ids))
    assert status == 0, err


def _upgrade(sync_server: RunningServer, fleet: SimulatedFleet) -> list[tuple[str, str]]:
    """Check every computer in, assign 5.0.0 to all, run on: (version, report) each."""
    fleet.run_for(INTERVAL)  # each computer checks in once
    ids = [c.computer_id for c in fleet.computers]
    assert None not in ids
    with sync_server.admin() as admin:
        kit_id = admin.get("/api/v1/kits")[0]["id"]
        admin.post(f"/api/v1/kits/{kit_id}/assignments", {"computers": ids})
    summary = fleet.run_for(3 * INTERVAL)
    assert summary.errors == 0
    return [summary.outcome[c.name] for c in fleet.computers]


def test_a_seed_gives_the_same_outcome_per_computer(
    sync_server: RunningServer,
    sync_cli: Callable[..., tuple[int, str, str]],
    engine_medium: Callable[[str], Path],
) -> None:
    assert import_kit(sync_cli, engine_medium("5.0.0"))[0] == 0
    runs = []
    for prefix, seed in (("first", 7), ("again", 7), ("other", 8)):
        options = FleetOptions(
            count=10, seed=seed, outcomes=SHAKY, interval=INTERVAL, name_prefix=prefix
        )
        with SimulatedFleet(sync_server.url, sync_server.admin_token, options) as fleet:
            runs.append(_upgrade(sync_server, fleet))
    first, again, other = runs
    assert first == again
    assert first != other
    finals = {report for _, report in first}
    assert finals == {UpgradeStatus.BLANK.value, UpgradeStatus.FAILED.value}
    assert {version for version, _ in first} == {"4.5.0", "5.0.0"}


def test_simulate_command_checks_a_fleet_in(
    sync_cli: Callable[..., tuple[int, str, str]],
) -> None:
    status, out, err = sync_cli(
        "simulate", "--count", "20", "--seed", "3", "--duration", "60", "--json"
    )
    assert status == 0, err
    doc = json.loads(out)
    assert doc["versions"] == {"4.5.0": 20}
    assert doc["checkins"] >= 20
    assert doc["errors"] == 0
    assert len(json.loads(sync_cli("computers", "--json")[1])) == 20


@pytest.mark.root
@pytest.mark.slow
def test_a_fleet_of_simulated_computers_and_a_real_disk_takes_the_kit(
    sync_server: RunningServer,
    sync_cli: Callable[..., tuple[int, str, str]],
    engine_medium: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert import_kit(sync_cli, engine_medium("5.0.0"))[0] == 0
    token = sync_cli("token", "create", "--name", "real-pc")[1].strip()
    disk = registered_disk(tmp_path / "real.img", sync_server.url, token)
    cache = str(tmp_path / "cache")
    assert agent("--once", "--cache", cache, str(disk)) == 0
    capsys.readouterr()  # the agent's lines
    options = FleetOptions(count=50, seed=11, interval=INTERVAL)
    with SimulatedFleet(sync_server.url, sync_server.admin_token, options) as fleet:
        fleet.run_for(INTERVAL)
        computers = json.loads(sync_cli("computers", "--json")[1])
        assert len(computers) == 51
        _assign(sync_cli, [c["id"] for c in computers])
        assert agent("--once", "--cache", cache, str(disk)) == 0
        capsys.readouterr()
        summary = fleet.run_for(3 * INTERVAL)
    assert summary.errors == 0
    assert sum(summary.versions.values()) == 50
    assert summary.versions["5.0.0"] > 45  # the default distribution fails a few percent
    labels = {
        c["name"]: c["assignments"][0]["status"]
        for c in json.loads(sync_cli("computers", "--json")[1])
    }
    assert labels.pop("real-pc") == UpgradeStatus.INSTALLED_REBOOT_REQUIRED.value
    # The server's Upgrade column agrees with what each simulated computer did.
    assert labels == {name: report for name, (_, report) in summary.outcome.items()}
