"""The Software Library API: kits, imports (uploaded or dropped into FileImport), background
tasks, and kit downloads (HTTP Range, so a computer's download resumes).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from sync_server.api_common import (
    ACTIVE,
    Admin,
    ApiError,
    Caller,
    Principal,
    db_session,
    kit_doc,
    kit_or_404,
    row_or_404,
    server_state,
    task_doc,
)
from sync_server.models import Assignment, Kit, Task
from sync_server.schemas import (
    KitDoc,
    TaskDoc,
)
from sync_server.tokens import TokenRole

log = logging.getLogger(__name__)
router = APIRouter()


@router.get("/api/v1/kits", response_model=list[KitDoc])
def list_kits(caller: Admin, request: Request) -> list[KitDoc]:
    with db_session(request) as session:
        return [kit_doc(k) for k in session.scalars(select(Kit).order_by(Kit.id))]


@router.post("/api/v1/imports", response_model=TaskDoc, status_code=202)
async def upload_import(caller: Admin, request: Request, name: str = "upload.iso") -> TaskDoc:
    """Upload an ISO (the request body) and start its import task."""
    uploads = server_state(request).file_import / ".uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    target = uploads / f"{os.urandom(8).hex()}.iso"
    with target.open("xb") as out:
        async for chunk in request.stream():
            out.write(chunk)
    task_id = server_state(request).runner.submit_import(
        target, Path(name).name, lambda _ok: target.unlink(missing_ok=True)
    )
    with db_session(request) as session:
        task = session.get(Task, task_id)
        assert task is not None
        return task_doc(task)


@router.post("/api/v1/imports/scan", response_model=list[TaskDoc])
def scan_imports(caller: Admin, request: Request) -> list[TaskDoc]:
    """Start an import task for every ISO in the server's FileImport folder now."""
    ids = server_state(request).scan_file_import(require_stable=False)
    with db_session(request) as session:
        return [task_doc(t) for t in session.scalars(select(Task).where(Task.id.in_(ids)))]


@router.get("/api/v1/tasks", response_model=list[TaskDoc])
def list_tasks(caller: Admin, request: Request) -> list[TaskDoc]:
    with db_session(request) as session:
        return [task_doc(t) for t in session.scalars(select(Task).order_by(Task.id))]


@router.get("/api/v1/tasks/{task_id}", response_model=TaskDoc)
def get_task(task_id: int, caller: Admin, request: Request, wait: float = 0.0) -> TaskDoc:
    """The task; with `wait`, answer once it has finished or `wait` seconds (at most
    300) have passed."""
    if wait > 0:
        server_state(request).runner.wait_finished(task_id, min(wait, 300.0))
    with db_session(request) as session:
        return task_doc(row_or_404(session, Task, task_id, "task"))


@router.post("/api/v1/tasks/{task_id}/cancel", response_model=TaskDoc)
def cancel_task(task_id: int, caller: Admin, request: Request) -> TaskDoc:
    with db_session(request) as session:
        row_or_404(session, Task, task_id, "task")
    if not server_state(request).runner.cancel(task_id):
        raise ApiError(409, f"task {task_id} has already finished")
    with db_session(request) as session:
        task = session.get(Task, task_id)
        assert task is not None
        return task_doc(task)


def _check_may_download(session: Session, caller: Principal, kit_id: int) -> Kit:
    """The admin and remote servers may download every kit; a computer only the kit assigned
    to it."""
    kit = kit_or_404(session, kit_id)
    if caller.role not in (TokenRole.ADMIN, TokenRole.SITE):
        assigned = session.scalars(
            select(Assignment).where(
                Assignment.kit_id == kit_id,
                Assignment.computer_id == caller.computer_id,
                Assignment.status.in_([s.value for s in ACTIVE]),
            )
        ).first()
        if assigned is None:
            raise ApiError(403, f"kit {kit_id} is not assigned to this computer")
    return kit


@router.get("/api/v1/kits/{kit_id}/file")
def download_kit(kit_id: int, caller: Caller, request: Request) -> FileResponse:
    """The kit's ISO; HTTP Range requests resume a download."""
    with db_session(request) as session:
        kit = _check_may_download(session, caller, kit_id)
        path = server_state(request).kits_dir / kit.file_name
    if caller.role is TokenRole.SITE:
        # What a relay asks for: a resumed one names the byte it resumes at.
        asked = request.headers.get("range", "the whole file")
        log.info("kit %d to %s: %s of %d bytes", kit_id, caller.name, asked, kit.size)
    return FileResponse(path, media_type="application/octet-stream")


@router.get("/api/v1/kits/{kit_id}/grant", status_code=204)
def download_grant(kit_id: int, caller: Caller, request: Request) -> Response:
    """204 when the caller may download the kit: a remote server asks this with its
    computer's token before it serves the kit from its own cache."""
    with db_session(request) as session:
        _check_may_download(session, caller, kit_id)
    return Response(status_code=204)
