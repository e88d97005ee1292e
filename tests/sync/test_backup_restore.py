"""Backup and restore: `engine-sync backup` writes one archive (an online snapshot of the
database and every kit, a manifest with checksums); `restore` brings it back into a new data
directory whose server serves the same kits and computers, and refuses a damaged or foreign
archive (or a data directory in use) with one line, changing nothing."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from commands import engine_sync

from .conftest import RunningServer, agent, import_kit, registered_disk, running_server

Cli = Callable[..., tuple[int, str, str]]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _restore(archive: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = engine_sync.main(["restore", str(archive), "--data", str(data)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return status, out, err


def _tree(path: Path) -> list[str]:
    """The files under `path`, without SQLite's own -wal/-shm/-journal files."""
    return sorted(
        str(p.relative_to(path))
        for p in path.rglob("*")
        if not p.name.endswith(("-wal", "-shm", "-journal"))
    )


@pytest.mark.root
@pytest.mark.slow
def test_backup_then_restore_serves_the_same_kits_and_computers(
    sync_server: RunningServer,
    sync_cli: Cli,
    engine_medium: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert import_kit(sync_cli, engine_medium("5.0.0"))[0] == 0
    token = sync_cli("token", "create", "--name", "pc1")[1].strip()
    disk = registered_disk(tmp_path / "pc1.img", sync_server.url, token)
    assert agent("--once", "--cache", str(tmp_path / "cache"), str(disk)) == 0
    capsys.readouterr()
    kits = json.loads(sync_cli("kits", "--json")[1])
    computers = json.loads(sync_cli("computers", "--json")[1])
    archive = tmp_path / "sync.tar"
    status, out, _ = sync_cli("backup", "-o", str(archive))
    assert status == 0, out
    assert "1 kit(s)" in out

    fresh = tmp_path / "restored"
    status, out, err = _restore(archive, fresh, capsys)
    assert status == 0, err
    with running_server(fresh, tmp_path / "restored.log") as restored, restored.admin() as admin:
        assert admin.get("/api/v1/kits") == kits
        assert admin.get("/api/v1/computers") == computers
    (kit_file,) = (fresh / "kits").iterdir()
    assert _sha256(kit_file) == kits[0]["sha256"]
    assert kit_file.read_bytes() == (sync_server.data / "kits" / kit_file.name).read_bytes()


def _backup(sync_cli: Cli, tmp_path: Path) -> Path:
    archive = tmp_path / "sync.tar"
    assert sync_cli("backup", "-o", str(archive))[0] == 0
    return archive


def test_a_damaged_archive_is_refused_and_nothing_is_written(
    sync_cli: Cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = _backup(sync_cli, tmp_path)
    data = bytearray(archive.read_bytes())
    at = data.index(b"SQLite format 3") + 4096  # inside the database member
    data[at] ^= 0xFF
    archive.write_bytes(bytes(data))
    parent = tmp_path / "restore-here"
    parent.mkdir()
    status, _, err = _restore(archive, parent / "restored", capsys)
    assert status == 2
    assert err.startswith("error: ")
    assert "sync.db does not match its checksum" in err.splitlines()[0]
    assert "hint: " in err
    assert list(parent.iterdir()) == []


def test_an_archive_that_is_no_backup_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = tmp_path / "other.tar"
    with tarfile.open(foreign, "w") as tar:
        body = b"not a manifest"
        info = tarfile.TarInfo("readme.txt")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    status, _, err = _restore(foreign, tmp_path / "restored", capsys)
    assert status == 2
    assert "not a Synchronizer backup" in err.splitlines()[0]
    assert not (tmp_path / "restored").exists()


def test_restore_never_writes_into_a_data_directory_in_use(
    sync_server: RunningServer, sync_cli: Cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = _backup(sync_cli, tmp_path)
    before = _tree(sync_server.data)
    status, _, err = _restore(archive, sync_server.data, capsys)
    assert status == 2
    assert "not empty" in err.splitlines()[0]
    assert _tree(sync_server.data) == before


def test_backup_keeps_an_existing_file_unless_forced(sync_cli: Cli, tmp_path: Path) -> None:
    archive = tmp_path / "sync.tar"
    archive.write_bytes(b"keep me")
    status, _, err = sync_cli("backup", "-o", str(archive))
    assert status == 2
    assert "already exists" in err
    assert archive.read_bytes() == b"keep me"
    assert sync_cli("backup", "-o", str(archive), "--force")[0] == 0
    assert archive.read_bytes().find(b"enginekit-synchronizer-backup") >= 0


def test_the_server_keeps_no_copy_of_a_backup_once_downloaded(
    sync_server: RunningServer, sync_cli: Cli, tmp_path: Path
) -> None:
    archive = _backup(sync_cli, tmp_path)
    assert archive.stat().st_size > 0
    assert list((sync_server.data / "backups").glob("*.tar")) == []
