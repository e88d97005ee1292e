"""Backups of a Synchronizer: one uncompressed tar holding `manifest.json` first, then an
online snapshot of the database (`sync.db`, taken with SQLite's backup API while the server
runs, or `sync.pgdump`, pg_dump's custom format of a PostgreSQL database, see pg_backup) and
every kit file the snapshot lists (`kits/...`). The manifest names each file with
its size and SHA-256, so `restore` proves the whole archive before it writes anything.

Restore goes into a data directory that does not exist or is empty (the server is not
running there): the archive is unpacked beside it, checked, and renamed into place in one
step; a damaged or foreign archive is refused and nothing is left behind. A PostgreSQL
backup is loaded into a new, empty database (--database) first, in one transaction. The
admin token is not in a backup; the restored server writes a new one at its first start.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from sqlalchemy import Connection, create_engine, make_url, text

from enginekit.errors import UserInputError
from sync_server import pg_backup
from sync_server.database import Database, shown_url
from sync_server.digests import file_sha256

FORMAT = "enginekit-synchronizer-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE = "sync.db"
CHUNK = 1024 * 1024


class BackupUnsupported(UserInputError):
    """The database is not one this server can snapshot itself."""


class DamagedBackup(UserInputError):
    default_hint = "use another backup (engine-sync backup makes one); nothing was changed"


@dataclass(frozen=True)
class BackupFile:
    name: str  # path inside the archive and inside the data directory
    size: int
    sha256: str


@dataclass(frozen=True)
class BackupManifest:
    created_at: str
    synchronizer_version: str
    schema_revision: str
    files: tuple[BackupFile, ...]

    def to_json(self) -> bytes:
        doc = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": self.created_at,
            "synchronizer_version": self.synchronizer_version,
            "schema_revision": self.schema_revision,
            "files": [vars(f) for f in self.files],
        }
        return json.dumps(doc, indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, source: str) -> BackupManifest:
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise DamagedBackup(f"{source}: not a Synchronizer backup (no {FORMAT} manifest)")
            if doc.get("format_version") != FORMAT_VERSION:
                raise DamagedBackup(
                    f"{source}: backup format {doc.get('format_version')!r} is not "
                    f"{FORMAT_VERSION}",
                    hint="restore it with the EngineKit release that made it",
                )
            files = tuple(
                BackupFile(str(f["name"]), int(f["size"]), str(f["sha256"])) for f in doc["files"]
            )
            return cls(
                str(doc["created_at"]),
                str(doc["synchronizer_version"]),
                str(doc["schema_revision"]),
                files,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DamagedBackup(f"{source}: its manifest is damaged ({exc})") from None


@dataclass(frozen=True)
class SnapshotFacts:
    """What the database snapshot holds that the manifest names."""

    kits: tuple[str, ...]  # kit file names
    synchronizer_version: str
    schema_revision: str


def _facts(connection: Connection) -> SnapshotFacts:
    from sync_server.vm_images import INITIAL_SYNCHRONIZER_VERSION, SYNCHRONIZER_VERSION

    kits = connection.scalars(text("SELECT file_name FROM kits ORDER BY id"))
    version = connection.scalar(
        text("SELECT value FROM server_settings WHERE name = :name"),
        {"name": SYNCHRONIZER_VERSION},
    )
    revision = connection.scalar(text("SELECT version_num FROM alembic_version"))
    return SnapshotFacts(
        tuple(str(k) for k in kits),
        str(version) if version is not None else INITIAL_SYNCHRONIZER_VERSION,
        str(revision) if revision is not None else "",
    )


def _sqlite_snapshot(db: Database, dest: Path) -> SnapshotFacts:
    """A consistent copy of the live SQLite database (the online backup API)."""
    raw = db.engine.raw_connection()
    try:
        with closing(sqlite3.connect(dest)) as target:
            source: Any = raw.driver_connection
            source.backup(target)
    finally:
        raw.close()
    copy = create_engine(f"sqlite:///{dest}")
    try:
        with copy.connect() as connection:
            return _facts(connection)
    finally:
        copy.dispose()


def snapshot_database(db: Database, folder: Path) -> tuple[str, Path, SnapshotFacts]:
    """The database as one file in `folder`: its name in the archive, its path, its facts."""
    dialect = db.engine.dialect.name
    if dialect == "sqlite":
        dest = folder / DATABASE
        return DATABASE, dest, _sqlite_snapshot(db, dest)
    if dialect == "postgresql":
        dest = folder / pg_backup.DUMP
        url = db.engine.url.render_as_string(hide_password=False)
        return pg_backup.DUMP, dest, pg_backup.dump(url, dest, _facts)
    raise BackupUnsupported(
        f"the server's database is {dialect}; engine-sync backup copies SQLite and "
        "PostgreSQL databases",
        hint="back the database up with its own tool and copy DATA/kits beside it",
    )


def backup_name(now: datetime) -> str:
    return f"synchronizer-backup-{now.strftime('%Y%m%dT%H%M%S%fZ')}.tar"


def write_backup(db: Database, data_dir: Path, dest_dir: Path) -> tuple[Path, BackupManifest]:
    """A new archive in `dest_dir` (built beside its name, renamed when complete)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".backup-") as tmp:
        name, snapshot, facts = snapshot_database(db, Path(tmp))
        sources = [(name, snapshot)] + [(f"kits/{k}", data_dir / "kits" / k) for k in facts.kits]
        files = tuple(
            BackupFile(name, path.stat().st_size, file_sha256(path)) for name, path in sources
        )
        manifest = BackupManifest(
            now.isoformat(), facts.synchronizer_version, facts.schema_revision, files
        )
        partial = Path(tmp) / "archive.tar"
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            body = manifest.to_json()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(body), int(now.timestamp()), 0o600
            tar.addfile(info, io.BytesIO(body))
            for name, path in sources:
                tar.add(path, arcname=name, recursive=False)
        with partial.open("rb+") as out:
            os.fsync(out.fileno())
        final = dest_dir / backup_name(now)
        os.link(partial, final)  # never replaces an existing backup
    return final, manifest


def _safe_member(name: str, source: str) -> str:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise DamagedBackup(f"{source}: member {name!r} escapes the data directory")
    return str(path)


def _copy_hashed(src: IO[bytes], dest: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with dest.open("xb") as out:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return size, digest.hexdigest()


def _check_target(data_dir: Path) -> None:
    hint = "restore into a new directory, then engine-sync serve --data it"
    if data_dir.is_symlink() or (data_dir.exists() and not data_dir.is_dir()):
        raise UserInputError(f"--data {data_dir}: not a directory", hint=hint)
    if data_dir.is_dir() and any(data_dir.iterdir()):
        raise UserInputError(
            f"--data {data_dir}: not empty (a server's data is there); restore never overwrites it",
            hint=hint,
        )
    if not data_dir.parent.is_dir():
        raise UserInputError(f"--data {data_dir}: no such directory {data_dir.parent}", hint=hint)


@contextmanager
def _opened(archive: Path) -> Iterator[tarfile.TarFile]:
    try:
        tar = tarfile.open(archive, "r:")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        raise UserInputError(
            f"{archive}: no such file", hint="give the path of a backup archive"
        ) from None
    except (tarfile.TarError, OSError) as exc:
        raise DamagedBackup(f"{archive}: not a readable backup archive ({exc})") from None
    with tar:
        yield tar


def _unpack_checked(archive: Path, staging: Path) -> BackupManifest:
    source = str(archive)
    with _opened(archive) as tar:
        try:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isfile():
                raise DamagedBackup(f"{source}: not a Synchronizer backup (no {MANIFEST} first)")
            stream = tar.extractfile(first)
            assert stream is not None
            manifest = BackupManifest.from_json(stream.read(), source)
            expected = {f.name: f for f in manifest.files}
            seen: set[str] = set()
            while (member := tar.next()) is not None:
                name = _safe_member(member.name, source)
                if not member.isfile() or name not in expected or name in seen:
                    raise DamagedBackup(f"{source}: unexpected member {name!r}")
                seen.add(name)
                dest = staging / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                stream = tar.extractfile(member)
                assert stream is not None
                size, sha = _copy_hashed(stream, dest)
                want = expected[name]
                if (size, sha) != (want.size, want.sha256):
                    raise DamagedBackup(
                        f"{source}: {name} does not match its checksum in the manifest "
                        "(the archive is damaged)"
                    )
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DamagedBackup(f"{source}: the archive is damaged ({exc})") from None
    missing = sorted(set(expected) - seen)
    if missing:
        raise DamagedBackup(f"{source}: truncated: {', '.join(missing)} missing")
    return manifest


def _restore_database(
    manifest: BackupManifest, staging: Path, database: str | None, source: str
) -> None:
    """Put the backup's database where the restored server finds it: SQLite's file stays in
    the data directory; a PostgreSQL dump is loaded into `database` and leaves it."""
    names = {f.name for f in manifest.files}
    if pg_backup.DUMP in names:
        if database is None:
            raise UserInputError(
                f"{source}: a backup of a PostgreSQL database; restore needs the database "
                "to load it into",
                hint="create a new, empty database (createdb) and give --database "
                "postgresql+psycopg://USER@HOST/DB",
            )
        if make_url(database).get_backend_name() != "postgresql":
            raise UserInputError(
                f"--database {shown_url(database)}: a PostgreSQL backup restores into "
                "PostgreSQL only",
                hint="give --database postgresql+psycopg://USER@HOST/DB of a new, empty database",
            )
        pg_backup.check_empty(database)
        pg_backup.restore(staging / pg_backup.DUMP, database, source)
        (staging / pg_backup.DUMP).unlink()
    elif database is not None:
        raise UserInputError(
            f"{source}: a backup of a SQLite database; it restores into DATA/sync.db",
            hint="leave out --database",
        )


def restore_backup(archive: Path, data_dir: Path, database: str | None = None) -> BackupManifest:
    """Unpack `archive` into the new data directory `data_dir`, all or nothing; a PostgreSQL
    backup's database goes into the new, empty database at the URL `database`."""
    _check_target(data_dir)
    staging = Path(tempfile.mkdtemp(dir=data_dir.parent, prefix=f".{data_dir.name}.restoring-"))
    try:
        manifest = _unpack_checked(archive, staging)
        _restore_database(manifest, staging, database, str(archive))
        (staging / "kits").mkdir(exist_ok=True)
        try:
            if data_dir.is_dir():
                data_dir.rmdir()  # empty, checked above; fails if something appeared meanwhile
            os.rename(staging, data_dir)
        except OSError as exc:
            raise UserInputError(
                f"--data {data_dir}: cannot be put in place ({exc.strerror})",
                hint="restore into a new directory, then engine-sync serve --data it",
            ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
