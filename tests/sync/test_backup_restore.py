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
from dataclasses import dataclass
from pathlib import Path

import pytest

from commands import engine_sync
from reference_builds.postgres import PrivateCluster

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


# --- PostgreSQL: pg_dump into the same archive, pg_restore into a new, empty database --------


@dataclass(frozen=True)
class PostgresBackup:
    archive: Path
    computers: list[dict[str, object]]  # as the server listed them when the backup was made
    token: str  # pc1's computer token


@pytest.fixture(scope="module")
def postgres_backup(
    postgres_cluster: PrivateCluster, tmp_path_factory: pytest.TempPathFactory
) -> PostgresBackup:
    """A backup of a server on PostgreSQL with one computer (pc1), after which a second one
    (pc2) enrolled: the change the restore must not bring."""
    tmp = tmp_path_factory.mktemp("pg-backup")
    database = postgres_cluster.new_database()
    with running_server(tmp / "data", tmp / "server.log", database=database) as server:
        with server.admin() as admin:
            token = admin.post("/api/v1/tokens", {"name": "pc1"})["token"]
            with server.client(token) as pc1:
                pc1.post("/api/v1/checkin", {"version": "4.5.0", "disk_id": "disk-1"})
            computers = admin.get("/api/v1/computers")
            archive = tmp / "sync.tar"
            argv = ["backup", "-o", str(archive), "--server", server.url, "--token"]
            assert engine_sync.main([*argv, server.admin_token]) == 0
            other = admin.post("/api/v1/tokens", {"name": "pc2"})["token"]
            with server.client(other) as pc2:
                pc2.post("/api/v1/checkin", {"version": "4.5.0", "disk_id": "disk-2"})
            assert len(admin.get("/api/v1/computers")) == 2
    return PostgresBackup(archive, computers, token)


def _pg_restore(
    archive: Path, data: Path, database: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    status = engine_sync.main(
        ["restore", str(archive), "--data", str(data), "--database", database]
    )
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return status, out, err


def test_a_postgresql_backup_restores_into_a_new_database(
    postgres_backup: PostgresBackup,
    postgres_cluster: PrivateCluster,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with tarfile.open(postgres_backup.archive) as tar:
        assert tar.getnames()[:2] == ["manifest.json", "sync.pgdump"]
    fresh, database = tmp_path / "restored", postgres_cluster.new_database()
    status, out, err = _pg_restore(postgres_backup.archive, fresh, database, capsys)
    assert status == 0, err
    assert "--database" in out
    assert not (fresh / "sync.pgdump").exists()
    with running_server(fresh, tmp_path / "restored.log", database=database) as restored:
        with restored.admin() as admin:
            assert admin.get("/api/v1/computers") == postgres_backup.computers
        with restored.client(postgres_backup.token) as pc1:
            answer = pc1.post("/api/v1/checkin", {"version": "4.5.0", "disk_id": "disk-1"})
            assert answer["computer_id"] == postgres_backup.computers[0]["id"]


def test_a_damaged_postgresql_dump_is_refused_and_the_database_stays_empty(
    postgres_backup: PostgresBackup,
    postgres_cluster: PrivateCluster,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The dump cut short, with a manifest that matches it: only pg_restore can tell.
    with tarfile.open(postgres_backup.archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    dump = members["sync.pgdump"][: len(members["sync.pgdump"]) * 2 // 3]
    manifest = json.loads(members["manifest.json"])
    for entry in manifest["files"]:
        if entry["name"] == "sync.pgdump":
            entry["size"], entry["sha256"] = len(dump), hashlib.sha256(dump).hexdigest()
    members["manifest.json"], members["sync.pgdump"] = json.dumps(manifest).encode(), dump
    damaged = tmp_path / "damaged.tar"
    with tarfile.open(damaged, "w") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    parent, database = tmp_path / "restore-here", postgres_cluster.new_database()
    parent.mkdir()
    status, _, err = _pg_restore(damaged, parent / "restored", database, capsys)
    assert status == 2
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("error: ")
    assert "its database dump is damaged" in lines[0]
    assert lines[1].startswith("hint: ")
    assert list(parent.iterdir()) == []
    name = database.rsplit("/", 1)[1]
    assert (
        postgres_cluster.psql(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", name
        ).strip()
        == "0"
    )
