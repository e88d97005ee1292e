"""The JSON API (`/api/v1/...`) on FastAPI; the OpenAPI document is served at `/openapi.json`.

Every call carries `Authorization: Bearer <token>`. The admin token may do everything; a
computer token may check in (which binds it to one computer at first use), report the status
of its own assignments, read its own computer and download the kits assigned to it. Anything
else is 403; an unknown or revoked token is 401. Errors are `{"error", "hint", "details"}`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from disk_images.state import UpgradeStatus
from sync_server import upgrade_graph
from sync_server.models import Assignment, Computer, Kit, Task, Token, utc_now
from sync_server.schemas import (
    AssignmentDoc,
    AssignRequest,
    CheckinRequest,
    CheckinResponse,
    ComputerDoc,
    KitDoc,
    NewTokenDoc,
    StatusReport,
    TaskDoc,
    TokenDoc,
    TokenRequest,
    UpdateOffer,
    VmDoc,
)
from sync_server.state import ServerState
from sync_server.tokens import TokenRole, digest_matches, new_token, token_digest

ACTIVE = (UpgradeStatus.PENDING, UpgradeStatus.SIGNALLED, UpgradeStatus.INSTALLED_REBOOT_REQUIRED)
# What a computer may report about its own assignment.
REPORTABLE = (
    UpgradeStatus.SIGNALLED,
    UpgradeStatus.INSTALLED_REBOOT_REQUIRED,
    UpgradeStatus.FAILED,
    UpgradeStatus.BLANK,
)


class ApiError(Exception):
    def __init__(
        self, status: int, error: str, hint: str | None = None, details: tuple[str, ...] = ()
    ) -> None:
        super().__init__(error)
        self.status, self.error, self.hint, self.details = status, error, hint, details


@dataclass(frozen=True)
class Principal:
    token_id: int
    role: TokenRole
    computer_id: int | None
    name: str

    def require_admin(self) -> None:
        if self.role is not TokenRole.ADMIN:
            raise ApiError(403, "this call needs the admin token")

    def may_see_computer(self, computer_id: int) -> bool:
        return self.role is TokenRole.ADMIN or self.computer_id == computer_id


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.sync
    return state


def _session(request: Request) -> Session:
    return _state(request).db.sessions()


def principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "no bearer token", hint="send Authorization: Bearer <token>")
    with _session(request) as session:
        row = session.scalars(select(Token).where(Token.digest == token_digest(token))).first()
        if row is None or not digest_matches(token, row.digest) or row.revoked_at is not None:
            raise ApiError(401, "the token is not valid (unknown or revoked)")
        return Principal(row.id, TokenRole(row.role), row.computer_id, row.name)


Caller = Annotated[Principal, Depends(principal)]


def _admin(request: Request) -> Principal:
    caller = principal(request)
    caller.require_admin()
    return caller


Admin = Annotated[Principal, Depends(_admin)]


def kit_doc(kit: Kit) -> KitDoc:
    return KitDoc(
        id=kit.id,
        kind=kit.kind,
        version=kit.version,
        upgrade_from=kit.upgrade_from_versions,
        layout=kit.layout,
        size=kit.size,
        sha256=kit.sha256,
        imported_at=kit.imported_at,
    )


def task_doc(task: Task) -> TaskDoc:
    return TaskDoc(
        id=task.id,
        kind=task.kind,
        state=task.state,
        progress=task.progress,
        source=task.source,
        error=task.error,
        kit_id=task.kit_id,
        created_at=task.created_at,
        started_at=task.started_at,
        finished_at=task.finished_at,
    )


def token_doc(row: Token) -> TokenDoc:
    return TokenDoc(
        id=row.id,
        name=row.name,
        role=row.role,
        computer_id=row.computer_id,
        created_at=row.created_at,
        revoked=row.revoked_at is not None,
    )


def assignment_doc(row: Assignment, kit: Kit) -> AssignmentDoc:
    return AssignmentDoc(
        id=row.id,
        kit_id=row.kit_id,
        kit_version=kit.version,
        computer_id=row.computer_id,
        status=row.status,
        status_label=UpgradeStatus(row.status).label,
        detail=row.detail,
        updated_at=row.updated_at,
    )


def computer_doc(session: Session, computer: Computer) -> ComputerDoc:
    rows = session.execute(
        select(Assignment, Kit)
        .join(Kit, Kit.id == Assignment.kit_id)
        .where(Assignment.computer_id == computer.id)
        .order_by(Assignment.id)
    ).all()
    return ComputerDoc(
        id=computer.id,
        name=computer.name,
        disk_id=computer.disk_id,
        running_version=computer.running_version,
        active_slot=computer.active_slot,
        slots=dict(computer.slots),
        engine_status=computer.engine_status,
        vms=[VmDoc(**vm) for vm in computer.vms.get("vms", [])],
        first_contact=computer.first_contact,
        last_contact=computer.last_contact,
        assignments=[assignment_doc(a, k) for a, k in rows],
    )


def _active_assignment(session: Session, computer_id: int) -> Assignment | None:
    return session.scalars(
        select(Assignment).where(
            Assignment.computer_id == computer_id,
            Assignment.status.in_([s.value for s in ACTIVE]),
        )
    ).first()


def _kit_or_404(session: Session, kit_id: int) -> Kit:
    kit = session.get(Kit, kit_id)
    if kit is None:
        raise ApiError(404, f"no kit {kit_id}", hint="engine-sync kits lists the kits")
    return kit


def _reconcile(session: Session, computer: Computer, assignment: Assignment) -> None:
    """What the computer's own report says about an installed assignment."""
    if assignment.status != UpgradeStatus.INSTALLED_REBOOT_REQUIRED:
        return
    kit = session.get(Kit, assignment.kit_id)
    assert kit is not None
    if computer.running_version == kit.version and computer.engine_status == UpgradeStatus.BLANK:
        assignment.status, assignment.detail = UpgradeStatus.BLANK.value, "running"
        assignment.updated_at = utc_now()


def build_app(state: ServerState) -> FastAPI:
    app = FastAPI(
        title="Synchronizer",
        version="1",
        description="Engine update kits, computers and their upgrades (EngineKit).",
    )
    app.state.sync = state

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        body = {"error": exc.error, "hint": exc.hint, "details": list(exc.details)}
        return JSONResponse(body, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        ]
        body = {"error": "the request is not valid", "hint": None, "details": details}
        return JSONResponse(body, status_code=422)

    # --- Software Library ---------------------------------------------------------------

    @app.get("/api/v1/kits", response_model=list[KitDoc])
    def list_kits(caller: Admin, request: Request) -> list[KitDoc]:
        with _session(request) as session:
            return [kit_doc(k) for k in session.scalars(select(Kit).order_by(Kit.id))]

    @app.post("/api/v1/imports", response_model=TaskDoc, status_code=202)
    async def upload_import(caller: Admin, request: Request, name: str = "upload.iso") -> TaskDoc:
        """Upload an ISO (the request body) and start its import task."""
        uploads = state.file_import / ".uploads"
        uploads.mkdir(parents=True, exist_ok=True)
        target = uploads / f"{os.urandom(8).hex()}.iso"
        with target.open("xb") as out:
            async for chunk in request.stream():
                out.write(chunk)
        task_id = state.runner.submit_import(
            target, Path(name).name, lambda ok: target.unlink(missing_ok=True)
        )
        with _session(request) as session:
            task = session.get(Task, task_id)
            assert task is not None
            return task_doc(task)

    @app.post("/api/v1/imports/scan", response_model=list[TaskDoc])
    def scan_imports(caller: Admin, request: Request) -> list[TaskDoc]:
        """Start an import task for every ISO in the server's FileImport folder now."""
        ids = state.scan_file_import(require_stable=False)
        with _session(request) as session:
            return [task_doc(t) for t in session.scalars(select(Task).where(Task.id.in_(ids)))]

    @app.get("/api/v1/tasks", response_model=list[TaskDoc])
    def list_tasks(caller: Admin, request: Request) -> list[TaskDoc]:
        with _session(request) as session:
            return [task_doc(t) for t in session.scalars(select(Task).order_by(Task.id))]

    @app.get("/api/v1/tasks/{task_id}", response_model=TaskDoc)
    def get_task(task_id: int, caller: Admin, request: Request, wait: float = 0.0) -> TaskDoc:
        """The task; with `wait`, answer once it has finished or `wait` seconds (at most
        300) have passed."""
        if wait > 0:
            state.runner.wait_finished(task_id, min(wait, 300.0))
        with _session(request) as session:
            task = session.get(Task, task_id)
            if task is None:
                raise ApiError(404, f"no task {task_id}")
            return task_doc(task)

    @app.post("/api/v1/tasks/{task_id}/cancel", response_model=TaskDoc)
    def cancel_task(task_id: int, caller: Admin, request: Request) -> TaskDoc:
        with _session(request) as session:
            if session.get(Task, task_id) is None:
                raise ApiError(404, f"no task {task_id}")
        if not state.runner.cancel(task_id):
            raise ApiError(409, f"task {task_id} has already finished")
        with _session(request) as session:
            task = session.get(Task, task_id)
            assert task is not None
            return task_doc(task)

    @app.get("/api/v1/kits/{kit_id}/file")
    def download_kit(kit_id: int, caller: Caller, request: Request) -> FileResponse:
        """The kit's ISO; HTTP Range requests resume a download."""
        with _session(request) as session:
            kit = _kit_or_404(session, kit_id)
            if caller.role is not TokenRole.ADMIN:
                assigned = session.scalars(
                    select(Assignment).where(
                        Assignment.kit_id == kit_id,
                        Assignment.computer_id == caller.computer_id,
                        Assignment.status.in_([s.value for s in ACTIVE]),
                    )
                ).first()
                if assigned is None:
                    raise ApiError(403, f"kit {kit_id} is not assigned to this computer")
            path = state.kits_dir / kit.file_name
        return FileResponse(path, media_type="application/octet-stream")

    # --- tokens and computers -----------------------------------------------------------

    @app.post("/api/v1/tokens", response_model=NewTokenDoc, status_code=201)
    def create_token(body: TokenRequest, caller: Admin, request: Request) -> NewTokenDoc:
        """A computer enrolment token; it binds to the first computer that checks in with it."""
        token = new_token()
        with _session(request) as session, session.begin():
            row = Token(name=body.name, role=TokenRole.COMPUTER.value, digest=token_digest(token))
            session.add(row)
            session.flush()
            doc = token_doc(row)
        return NewTokenDoc(**doc.model_dump(), token=token)

    @app.get("/api/v1/tokens", response_model=list[TokenDoc])
    def list_tokens(caller: Admin, request: Request) -> list[TokenDoc]:
        with _session(request) as session:
            return [token_doc(t) for t in session.scalars(select(Token).order_by(Token.id))]

    @app.post("/api/v1/tokens/{token_id}/revoke", response_model=TokenDoc)
    def revoke_token(token_id: int, caller: Admin, request: Request) -> TokenDoc:
        with _session(request) as session, session.begin():
            row = session.get(Token, token_id)
            if row is None:
                raise ApiError(404, f"no token {token_id}")
            if row.role == TokenRole.ADMIN:
                raise ApiError(409, "the admin token cannot be revoked through the API")
            row.revoked_at = row.revoked_at or utc_now()
            return token_doc(row)

    @app.get("/api/v1/computers", response_model=list[ComputerDoc])
    def list_computers(caller: Admin, request: Request) -> list[ComputerDoc]:
        with _session(request) as session:
            computers = session.scalars(select(Computer).order_by(Computer.id))
            return [computer_doc(session, c) for c in computers]

    @app.get("/api/v1/computers/{computer_id}", response_model=ComputerDoc)
    def get_computer(computer_id: int, caller: Caller, request: Request) -> ComputerDoc:
        if not caller.may_see_computer(computer_id):
            raise ApiError(403, "a computer token may read only its own computer")
        with _session(request) as session:
            computer = session.get(Computer, computer_id)
            if computer is None:
                raise ApiError(404, f"no computer {computer_id}")
            return computer_doc(session, computer)

    # --- assignments --------------------------------------------------------------------

    @app.get("/api/v1/kits/{kit_id}/assignments", response_model=list[AssignmentDoc])
    def kit_assignments(kit_id: int, caller: Admin, request: Request) -> list[AssignmentDoc]:
        """The kit's "Computers" tab: the Upgrade column per computer."""
        with _session(request) as session:
            kit = _kit_or_404(session, kit_id)
            rows = session.scalars(select(Assignment).where(Assignment.kit_id == kit_id))
            return [assignment_doc(a, kit) for a in rows]

    @app.post("/api/v1/kits/{kit_id}/assignments", response_model=list[AssignmentDoc])
    def assign(
        kit_id: int, body: AssignRequest, caller: Admin, request: Request
    ) -> list[AssignmentDoc]:
        """Assign the kit to computers, all or none: a computer whose running version is not
        on the kit's upgrade path (a barrier, a downgrade, the same version) refuses the lot."""
        with _session(request) as session, session.begin():
            kit = _kit_or_404(session, kit_id)
            graph = [(k.version, k.upgrade_from_versions) for k in session.scalars(select(Kit))]
            problems: list[str] = []
            chosen: list[Computer] = []
            for computer_id in dict.fromkeys(body.computers):
                computer = session.get(Computer, computer_id)
                if computer is None:
                    problems.append(f"computer {computer_id}: no such computer")
                    continue
                decision = upgrade_graph.decide(
                    computer.running_version, kit.version, kit.upgrade_from_versions, graph
                )
                active = _active_assignment(session, computer.id)
                if not decision.allowed:
                    problems.append(f"computer {computer.id} ({computer.name}): {decision.reason}")
                elif active is not None and active.kit_id != kit.id:
                    problems.append(
                        f"computer {computer.id} ({computer.name}): another kit is assigned "
                        f"(status {UpgradeStatus(active.status).label})"
                    )
                else:
                    chosen.append(computer)
            if problems:
                raise ApiError(
                    409,
                    f"Engine {kit.version} was assigned to no computer: {len(problems)} refused",
                    hint="assign the barrier kit first, or leave those computers out",
                    details=tuple(problems),
                )
            docs = []
            for computer in chosen:
                row = session.scalars(
                    select(Assignment).where(
                        Assignment.kit_id == kit.id, Assignment.computer_id == computer.id
                    )
                ).first()
                if row is None:
                    row = Assignment(kit_id=kit.id, computer_id=computer.id, status="")
                    session.add(row)
                if row.status not in (s.value for s in ACTIVE):
                    row.status, row.detail = UpgradeStatus.PENDING.value, ""
                    row.updated_at = utc_now()
                session.flush()
                docs.append(assignment_doc(row, kit))
            return docs

    # --- the computer's side ------------------------------------------------------------

    @app.post("/api/v1/checkin", response_model=CheckinResponse)
    def checkin(body: CheckinRequest, caller: Caller, request: Request) -> CheckinResponse:
        """A computer reports what it runs; the answer names an assigned kit, if any."""
        if caller.role is not TokenRole.COMPUTER:
            raise ApiError(403, "check-in needs a computer token (engine-sync token create)")
        try:
            engine_status = UpgradeStatus(body.upgrade_status)
        except ValueError:
            raise ApiError(422, f"unknown upgrade status {body.upgrade_status!r}") from None
        with _session(request) as session, session.begin():
            token = session.get(Token, caller.token_id)
            assert token is not None
            computer = session.get(Computer, token.computer_id) if token.computer_id else None
            if computer is None:
                computer = Computer(
                    name=token.name or body.disk_id or "computer", running_version=body.version
                )
                session.add(computer)
                session.flush()
                token.computer_id = computer.id
            computer.disk_id = body.disk_id
            computer.running_version = body.version
            computer.active_slot = body.active_slot
            computer.slots = dict(body.slots)
            computer.engine_status = engine_status.value
            computer.vms = {"vms": [vm.model_dump() for vm in body.vms]}
            computer.last_contact = utc_now()
            offer = None
            assignment = _active_assignment(session, computer.id)
            if assignment is not None:
                _reconcile(session, computer, assignment)
                if assignment.status == UpgradeStatus.PENDING:
                    assignment.status = UpgradeStatus.SIGNALLED.value
                    assignment.updated_at = utc_now()
                if assignment.status in (
                    UpgradeStatus.SIGNALLED,
                    UpgradeStatus.INSTALLED_REBOOT_REQUIRED,
                ):
                    kit = session.get(Kit, assignment.kit_id)
                    assert kit is not None
                    offer = UpdateOffer(
                        assignment_id=assignment.id,
                        kit_id=kit.id,
                        version=kit.version,
                        size=kit.size,
                        sha256=kit.sha256,
                        status=assignment.status,
                        download=f"/api/v1/kits/{kit.id}/file",
                    )
            return CheckinResponse(
                computer_id=computer.id, checkin_interval=state.checkin_interval, update=offer
            )

    @app.post("/api/v1/assignments/{assignment_id}/status", response_model=AssignmentDoc)
    def report_status(
        assignment_id: int, body: StatusReport, caller: Caller, request: Request
    ) -> AssignmentDoc:
        """The computer reports how its upgrade went (Installed, Failed with why, Blank)."""
        with _session(request) as session, session.begin():
            row = session.get(Assignment, assignment_id)
            if row is None or not (
                caller.role is TokenRole.COMPUTER and row.computer_id == caller.computer_id
            ):
                raise ApiError(403, "a computer may report only its own assignments")
            try:
                status = UpgradeStatus(body.status)
            except ValueError:
                raise ApiError(422, f"unknown upgrade status {body.status!r}") from None
            if status not in REPORTABLE:
                raise ApiError(422, f"a computer cannot report {status.label!r}")
            row.status, row.detail, row.updated_at = status.value, body.detail, utc_now()
            kit = session.get(Kit, row.kit_id)
            assert kit is not None
            return assignment_doc(row, kit)

    return app
