"""Assignments follow the upgrade graph: a computer whose running version is not on the kit's
path is refused at assignment, with the reason, and nothing is assigned."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from sync_server.upgrade_graph import decide

from .conftest import ON_BOTH_DATABASES, RunningServer, import_kit


def _computer(sync_server: RunningServer, version: str, name: str) -> int:
    """A computer that checked in (over HTTP, with its own token) running `version`."""
    with sync_server.admin() as admin:
        token = admin.post("/api/v1/tokens", {"name": name})["token"]
    with sync_server.client(token) as client:
        return int(client.post("/api/v1/checkin", {"version": version})["computer_id"])


@ON_BOTH_DATABASES
@pytest.mark.parametrize(
    ("running", "reason"),
    [
        ("4.0.0", "Engine 4.0.0 cannot upgrade to 5.0.0 directly: 4.5.0 is a barrier"),
        ("5.0.0", "the computer already runs Engine 5.0.0"),
        ("5.1.0", "Engine 5.0.0 is a downgrade from 5.1.0"),
    ],
)
def test_assignment_off_the_path_is_refused_with_the_reason(
    sync_server: RunningServer,
    sync_cli: Callable[..., tuple[int, str, str]],
    engine_medium: Callable[[str], Path],
    running: str,
    reason: str,
) -> None:
    assert import_kit(sync_cli, engine_medium("5.0.0"))[0] == 0
    good = _computer(sync_server, "4.5.0", "good")
    bad = _computer(sync_server, running, "bad")
    status, _, err = sync_cli("assign", "5.0.0", "--computer", str(good), str(bad))
    assert status == 2
    assert err.startswith("error: server refused (409): Engine 5.0.0 was assigned to no computer")
    assert f"computer {bad} (bad): {reason}" in err
    computers = json.loads(sync_cli("computers", "--json")[1])
    assert all(c["assignments"] == [] for c in computers)


def test_barrier_is_the_first_step_of_the_known_path() -> None:
    kits = [("4.5.0", ["4.0.0"]), ("5.0.0", ["4.5.0"])]
    decision = decide("4.0.0", "5.0.0", ["4.5.0"], kits)
    assert (decision.allowed, decision.barrier) == (False, "4.5.0")
    assert decide("4.5.0", "5.0.0", ["4.5.0"], kits).allowed
