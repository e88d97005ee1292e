"""The server's own upkeep: its version and upgrade (the order rule), backups (one archive
of database and kits, downloadable) and the Daily Roll-Up Backup task.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from enginekit.errors import HostError
from sync_server import server_upgrade, sites
from sync_server.api_common import Admin, ApiError, db_session, server_state, task_doc
from sync_server.backup import BackupUnsupported, write_backup
from sync_server.models import Task, TaskKind, utc_now
from sync_server.schemas import TaskDoc
from sync_server.server_upgrade import UpgradeRefused
from sync_server.state import ServerState
from sync_server.vm_images import set_synchronizer_version, synchronizer_version

router = APIRouter()
BACKUPS = "backups"


class ServerDoc(BaseModel):
    synchronizer_version: str
    database: str  # the dialect: sqlite or postgresql


class UpgradeRequest(BaseModel):
    to: str | None = Field(default=None, description="default: the newest Engine kit")
    force: bool = False  # past the order rule and running remotes; active tasks always refuse


class UpgradeDoc(BaseModel):
    previous: str
    synchronizer_version: str
    backup: str  # the archive's name (GET /api/v1/backups/{name}/file)
    forced_past: list[str]  # computers on an older Engine, running remotes (with force)
    reschedule: list[str]  # cancelled Daily Roll-Up Backups to schedule again


class BackupDoc(BaseModel):
    name: str
    size: int
    synchronizer_version: str
    schema_revision: str
    files: list[dict[str, str | int]]


class DailyBackupRequest(BaseModel):
    at: datetime | None = Field(default=None, description="default: the next 02:00 UTC")


def _backup(state: ServerState) -> BackupDoc:
    try:
        path, manifest = write_backup(state.db, state.data_dir, state.data_dir / BACKUPS)
    except BackupUnsupported as exc:
        raise ApiError(409, exc.message, exc.hint) from None
    except HostError as exc:  # pg_dump missing or failing on the server's host
        raise ApiError(503, exc.message, exc.hint) from None
    return BackupDoc(
        name=path.name,
        size=path.stat().st_size,
        synchronizer_version=manifest.synchronizer_version,
        schema_revision=manifest.schema_revision,
        files=[vars(f) for f in manifest.files],
    )


@router.get("/api/v1/server", response_model=ServerDoc)
def server_info(caller: Admin, request: Request) -> ServerDoc:
    state = server_state(request)
    with db_session(request) as session:
        return ServerDoc(
            synchronizer_version=synchronizer_version(session),
            database=state.db.engine.dialect.name,
        )


@router.post("/api/v1/server/upgrade", response_model=UpgradeDoc)
def upgrade(body: UpgradeRequest, caller: Admin, request: Request) -> UpgradeDoc:
    """Record the server's upgrade to `to`, after the order rule, the task check and a backup."""
    state = server_state(request)
    try:
        with db_session(request) as session:
            target = server_upgrade.target_version(session, body.to)
            previous = server_upgrade.check_upgrade(session, target, force=body.force)
            forced = server_upgrade.older_computers(session, target)
            forced += sites.running_sites(session)
            reschedule = server_upgrade.reschedule_notes(session)
    except UpgradeRefused as exc:
        raise ApiError(409, exc.error, exc.hint, exc.details) from None
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    backup = _backup(state)
    with db_session(request) as session, session.begin():
        set_synchronizer_version(session, target)
    return UpgradeDoc(
        previous=previous,
        synchronizer_version=target,
        backup=backup.name,
        forced_past=forced,
        reschedule=reschedule,
    )


@router.post("/api/v1/backups", response_model=BackupDoc, status_code=201)
def create_backup(caller: Admin, request: Request) -> BackupDoc:
    """A backup archive now (database snapshot and kits), kept in DATA/backups."""
    return _backup(server_state(request))


@router.get("/api/v1/backups/{name}/file")
def download_backup(name: str, caller: Admin, request: Request) -> FileResponse:
    return FileResponse(_backup_file(request, name), media_type="application/x-tar")


@router.delete("/api/v1/backups/{name}", status_code=204)
def delete_backup(name: str, caller: Admin, request: Request) -> None:
    """Remove a backup from DATA/backups (engine-sync backup does, once it has its copy)."""
    _backup_file(request, name).unlink()


def _backup_file(request: Request, name: str) -> Path:
    """DATA/backups/NAME, or 404 for a name that is not a backup there (no paths)."""
    path = server_state(request).data_dir / BACKUPS / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise ApiError(404, f"no backup {name!r}")
    return path


def next_two_am() -> datetime:
    now = utc_now()
    at = datetime.combine(now.date(), time(2, 0), tzinfo=now.tzinfo)
    return at if at > now else at + timedelta(days=1)


@router.post("/api/v1/backups/daily", response_model=TaskDoc, status_code=202)
def schedule_daily_backup(body: DailyBackupRequest, caller: Admin, request: Request) -> TaskDoc:
    """A Daily Roll-Up Backup task: queued until its time, then one backup archive."""
    state = server_state(request)
    at = body.at or next_two_am()
    if at.tzinfo is None:
        raise ApiError(422, "at: give a time with its zone, e.g. 2026-12-02T02:00:00Z")

    def roll_up() -> None:
        write_backup(state.db, state.data_dir, state.data_dir / BACKUPS)

    task_id = state.runner.submit_scheduled(
        TaskKind.DAILY_ROLLUP_BACKUP, f"at {at.isoformat()}", at, roll_up
    )
    with db_session(request) as session:
        task = session.get(Task, task_id)
        assert task is not None
        return task_doc(task)
