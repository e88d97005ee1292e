"""The Software Library: an ISO becomes a kit only after the media library verified it; a
damaged one is a failed task with its error line and never a kit."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pycdlib
import pytest

from .conftest import ON_BOTH_DATABASES, RunningServer, import_kit


def _flip_payload_byte(iso: Path, rr_path: str) -> None:
    reader = pycdlib.PyCdlib()
    reader.open(str(iso))
    extent = reader.get_record(rr_path=rr_path).extent_location()
    reader.close()
    with iso.open("r+b") as fp:
        fp.seek(extent * 2048 + 3)
        byte = fp.read(1)
        fp.seek(extent * 2048 + 3)
        fp.write(bytes([byte[0] ^ 0x01]))


@ON_BOTH_DATABASES
def test_import_makes_a_kit_with_the_manifest_and_sha256(
    sync_server: RunningServer,
    sync_cli: Callable[..., tuple[int, str, str]],
    engine_medium: Callable[[str], Path],
) -> None:
    iso = engine_medium("5.0.0")
    status, _, err = import_kit(sync_cli, iso)
    assert status == 0, err
    (kit,) = json.loads(sync_cli("kits", "--json")[1])
    assert (kit["kind"], kit["version"], kit["upgrade_from"]) == (
        "Engine Update",
        "5.0.0",
        ["4.5.0"],
    )
    stored = sync_server.data / "kits" / f"engine-5.0.0-{kit['sha256'][:12]}.iso"
    assert stored.read_bytes() == iso.read_bytes()
    assert kit["size"] == iso.stat().st_size
    status, _, err = sync_cli("task", "cancel", "1")
    assert status == 2
    assert err.splitlines()[0] == "error: server refused (409): task 1 has already finished"


def test_damaged_iso_is_a_failed_task_and_no_kit(
    sync_server: RunningServer,
    sync_cli: Callable[..., tuple[int, str, str]],
    engine_medium: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    damaged = tmp_path / "engine-5.0.0.iso"
    shutil.copyfile(engine_medium("5.0.0"), damaged)
    _flip_payload_byte(damaged, "/system/root/etc/engine/defaults.json")
    status, _, err = import_kit(sync_cli, damaged)
    assert status == 1
    (task,) = json.loads(sync_cli("tasks", "--json")[1])
    assert task["state"] == "failed"
    assert "not a sound Engine update kit" in task["error"]
    assert err.splitlines()[0].startswith("error: ")
    assert json.loads(sync_cli("kits", "--json")[1]) == []
    assert [p.name for p in (sync_server.data / "kits").iterdir()] == []


def test_iso_dropped_into_file_import_is_imported(
    sync_server: RunningServer,
    sync_cli: Callable[..., tuple[int, str, str]],
    engine_medium: Callable[[str], Path],
) -> None:
    dropped = sync_server.data / "FileImport" / "engine-5.0.0.iso"
    shutil.copyfile(engine_medium("5.0.0"), dropped)
    with sync_server.admin() as admin:
        (task,) = admin.post("/api/v1/imports/scan")
        assert task["source"] == "engine-5.0.0.iso"
        task = admin.get(f"/api/v1/tasks/{task['id']}?wait=120")
    assert task["state"] == "succeeded", task
    assert [k["version"] for k in json.loads(sync_cli("kits", "--json")[1])] == ["5.0.0"]
    assert not dropped.exists()


@ON_BOTH_DATABASES
@pytest.mark.usefixtures("sync_server")
def test_the_same_version_twice_is_refused(
    sync_cli: Callable[..., tuple[int, str, str]], engine_medium: Callable[[str], Path]
) -> None:
    iso = engine_medium("5.0.0")
    assert import_kit(sync_cli, iso)[0] == 0
    status, _, err = import_kit(sync_cli, iso)
    assert status == 1
    assert "Engine 5.0.0 is already in the Software Library" in err
    assert len(json.loads(sync_cli("kits", "--json")[1])) == 1
