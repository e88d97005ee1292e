"""The server's own upgrade (upgrade guide 6.1-6.4): `engine-sync upgrade-server` refuses
while a registered computer runs an older Engine (naming it) unless forced, and while tasks
are active (listing them); a cancelled Daily Roll-Up Backup is flagged for rescheduling; a
backup is taken before the new version is recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from reference_builds.registered_disk import create_registered_disk

from .conftest import RunningServer, agent

Cli = Callable[..., tuple[int, str, str]]


def _server_version(sync_server: RunningServer) -> str:
    with sync_server.admin() as admin:
        return str(admin.get("/api/v1/server")["synchronizer_version"])


def _backups(sync_server: RunningServer) -> list[str]:
    folder = sync_server.data / "backups"
    return sorted(p.name for p in folder.glob("*.tar")) if folder.is_dir() else []


@pytest.mark.root
@pytest.mark.slow
def test_refused_while_a_computer_runs_an_older_engine_naming_it(
    sync_server: RunningServer,
    sync_cli: Cli,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, version in (("pc-old", "4.5.0"), ("pc-new", "5.0.0")):
        token = sync_cli("token", "create", "--name", name)[1].strip()
        disk = create_registered_disk(
            tmp_path / f"{name}.img", version, 2 * 1024**3, sync_server.url, token, with_vms=False
        )
        assert agent("--once", "--cache", str(tmp_path / "cache"), str(disk)) == 0
        capsys.readouterr()  # the agent's lines are not the next command's output
    status, _, err = sync_cli("upgrade-server", "--to", "5.0.0")
    assert status == 2
    first, *rest = err.splitlines()
    assert first.startswith("error: ")
    assert "computer 1 (pc-old) runs Engine 4.5.0" in first
    assert "pc-new" not in first
    assert rest[-1].startswith("hint: ")
    assert _server_version(sync_server) == "4.5.0"
    assert _backups(sync_server) == []


def test_refused_while_tasks_run_and_a_cancelled_daily_backup_is_flagged(
    sync_server: RunningServer, sync_cli: Cli
) -> None:
    status, out, _ = sync_cli("backup", "--daily", "--at", "2099-01-01T02:00:00Z", "--json")
    assert status == 0
    task = json.loads(out)
    assert (task["kind"], task["state"]) == ("Daily Roll-Up Backup", "queued")
    status, _, err = sync_cli("upgrade-server", "--to", "5.0.0", "--force")
    assert status == 2
    assert (
        f"task {task['id']}: Daily Roll-Up Backup at 2099-01-01T02:00:00+00:00 queued"
        in (err.splitlines()[0])
    )
    assert _server_version(sync_server) == "4.5.0"

    assert sync_cli("task", "cancel", str(task["id"]))[0] == 0
    tasks = json.loads(sync_cli("tasks", "--json")[1])
    assert tasks[0]["note"] == "cancelled: reschedule it (engine-sync backup --daily)"
    assert "cancelled (cancelled: reschedule it" in sync_cli("tasks")[1]
    status, out, _ = sync_cli("upgrade-server", "--to", "5.0.0")
    assert status == 0
    assert "Synchronizer 4.5.0 -> 5.0.0: backup synchronizer-backup-" in out
    assert f"note: task {task['id']}: Daily Roll-Up Backup cancelled: reschedule it" in out
    assert _server_version(sync_server) == "5.0.0"
    assert len(_backups(sync_server)) == 1


def test_without_a_kit_or_a_target_version_the_upgrade_is_refused(
    sync_cli: Cli,
) -> None:
    status, _, err = sync_cli("upgrade-server")
    assert status == 2
    assert "no Engine kit in the Software Library" in err.splitlines()[0]
    assert "hint: give --to VERSION" in err
