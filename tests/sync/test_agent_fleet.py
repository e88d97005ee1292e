"""Several computers at once: the agent runs disks side by side (bounded), installs the
assigned kit on each through the upgrade engine, and a disk in use is reported and retried."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from disk_images.probe import Installation, probe
from disk_images.state import UpgradeStatus
from enginekit.process import spawn
from sync_agent.daemon import AgentOptions, CycleResult, run_agents

from .conftest import ON_BOTH_DATABASES, RunningServer, agent, import_kit, registered_disk

pytestmark = [pytest.mark.root, pytest.mark.slow]

HOLD_LOCK = (
    "import signal, sys\n"
    "from disk_images.lock import disk_lock\n"
    "with disk_lock(sys.argv[1]):\n"
    "    print('held', flush=True)\n"
    "    signal.pause()\n"
)


def _registered(
    sync_cli: Callable[..., tuple[int, str, str]],
    sync_server: RunningServer,
    tmp_path: Path,
    name: str,
) -> Path:
    token = sync_cli("token", "create", "--name", name)[1].strip()
    return registered_disk(tmp_path / f"{name}.img", sync_server.url, token)


@ON_BOTH_DATABASES
def test_two_disks_install_the_assigned_kit_side_by_side(
    sync_server: RunningServer,
    sync_cli: Callable[..., tuple[int, str, str]],
    engine_medium: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert import_kit(sync_cli, engine_medium("5.0.0"))[0] == 0
    disks = [_registered(sync_cli, sync_server, tmp_path, name) for name in ("pc1", "pc2")]
    cache = str(tmp_path / "cache")
    assert agent("--once", "--jobs", "2", "--cache", cache, *map(str, disks)) == 0
    capsys.readouterr()
    ids = [str(c["id"]) for c in json.loads(sync_cli("computers", "--json")[1])]
    assert sync_cli("assign", "5.0.0", "--computer", *ids)[0] == 0
    assert agent("--once", "--jobs", "2", "--cache", cache, *map(str, disks)) == 0
    capsys.readouterr()
    computers = json.loads(sync_cli("computers", "--json")[1])
    statuses = [c["assignments"][0]["status_label"] for c in computers]
    assert statuses == ["Installed (Reboot Required)"] * 2
    for disk in disks:
        found = probe(disk)
        assert isinstance(found, Installation)
        assert found.upgrade_status is UpgradeStatus.INSTALLED_REBOOT_REQUIRED
        pending = found.state.pending_slot
        assert pending is not None
        assert (found.version, found.slots[pending]) == ("4.5.0", "5.0.0")


def test_a_disk_in_use_is_reported_and_retried(
    sync_server: RunningServer,
    sync_cli: Callable[..., tuple[int, str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    disk = _registered(sync_cli, sync_server, tmp_path, "pc")
    holder = spawn([sys.executable, "-c", HOLD_LOCK, disk], stderr=None)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"held\n"
        assert agent("--once", "--cache", str(tmp_path / "cache"), str(disk)) == 1
        assert "retried at the next check-in" in capsys.readouterr().out
        assert json.loads(sync_cli("computers", "--json")[1]) == []
    finally:
        holder.kill()
        holder.wait()
    assert agent("--once", "--cache", str(tmp_path / "cache"), str(disk)) == 0
    capsys.readouterr()
    assert len(json.loads(sync_cli("computers", "--json")[1])) == 1


def test_without_once_the_agent_checks_in_again_until_stopped(
    sync_server: RunningServer, sync_cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    disk = _registered(sync_cli, sync_server, tmp_path, "pc")
    stop = threading.Event()
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if sum("checked in as computer" in ln for ln in lines) == 3:
            stop.set()

    options = AgentOptions(cache=tmp_path / "cache")
    results = run_agents([disk], options, say, once=False, interval=0.01, stop=stop)
    assert results == [CycleResult.OK]
    assert sum("checked in as computer 1" in ln for ln in lines) == 3
