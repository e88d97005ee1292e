"""What every API module shares: the error type, who is calling (the bearer token's
principal, and the `Caller`/`Admin` dependencies), the request's server state and database
session, and the converters from rows to the API's documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from disk_images.state import UpgradeStatus
from sync_server.models import (
    Assignment,
    Computer,
    Kit,
    Site,
    Task,
    TaskKind,
    TaskState,
    Token,
    utc_now,
)
from sync_server.schemas import (
    AssignmentDoc,
    ComputerDoc,
    KitDoc,
    TaskDoc,
    TokenDoc,
    VmDoc,
)
from sync_server.state import ServerState
from sync_server.tokens import TokenRole, digest_matches, token_digest

RowT = TypeVar("RowT")

ACTIVE = (
    UpgradeStatus.PENDING,
    UpgradeStatus.READY_TO_DOWNLOAD,
    UpgradeStatus.SIGNALLED,
    UpgradeStatus.INSTALLED_REBOOT_REQUIRED,
)
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
    site_id: int | None = None  # a remote server's token

    def require_admin(self) -> None:
        if self.role is not TokenRole.ADMIN:
            raise ApiError(403, "this call needs the admin token")

    def may_see_computer(self, computer_id: int) -> bool:
        return self.role is TokenRole.ADMIN or self.computer_id == computer_id


def server_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.sync
    return state


def db_session(request: Request) -> Session:
    return server_state(request).db.sessions()


def principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "no bearer token", hint="send Authorization: Bearer <token>")
    with db_session(request) as session:
        row = session.scalars(select(Token).where(Token.digest == token_digest(token))).first()
        if row is None or not digest_matches(token, row.digest) or row.revoked_at is not None:
            raise ApiError(401, "the token is not valid (unknown or revoked)")
        return Principal(row.id, TokenRole(row.role), row.computer_id, row.name, row.site_id)


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
        note=task_note(task),
    )


RESCHEDULE_NOTE = "cancelled: reschedule it (engine-sync backup --daily)"


def task_note(task: Task) -> str:
    """The guide (6.3): a cancelled Daily Roll-Up Backup must be rescheduled."""
    if task.kind == TaskKind.DAILY_ROLLUP_BACKUP and task.state == TaskState.CANCELLED:
        return RESCHEDULE_NOTE
    return ""


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
        site=site.name if (site := _site(session, computer)) is not None else None,
        assignments=[assignment_doc(a, k) for a, k in rows],
    )


def _site(session: Session, computer: Computer) -> Site | None:
    return session.get(Site, computer.site_id) if computer.site_id is not None else None


def active_assignment(session: Session, computer_id: int) -> Assignment | None:
    return session.scalars(
        select(Assignment).where(
            Assignment.computer_id == computer_id,
            Assignment.status.in_([s.value for s in ACTIVE]),
        )
    ).first()


def row_or_404(
    session: Session,
    model: type[RowT],
    row_id: int,
    what: str,
    hint: str | None = None,
    *,
    lock: bool = False,
) -> RowT:
    """The row of `model` with this id, or the API's 404: "no `what` `row_id`"."""
    row = session.get(model, row_id, with_for_update=lock)
    if row is None:
        raise ApiError(404, f"no {what} {row_id}", hint=hint)
    return row


def kit_or_404(session: Session, kit_id: int) -> Kit:
    return row_or_404(session, Kit, kit_id, "kit", "engine-sync kits lists the kits")


def reconcile(session: Session, computer: Computer, assignment: Assignment) -> None:
    """What the computer's own report says about an installed assignment."""
    if assignment.status != UpgradeStatus.INSTALLED_REBOOT_REQUIRED:
        return
    kit = session.get(Kit, assignment.kit_id)
    assert kit is not None
    if computer.running_version == kit.version and computer.engine_status == UpgradeStatus.BLANK:
        assignment.status, assignment.detail = UpgradeStatus.BLANK.value, "running"
        assignment.updated_at = utc_now()
