"""The fleet API: computer tokens, computers, assignments (checked against the upgrade graph)
and the computer's own side: check-in and status reports (direct, or forwarded by the remote
server the computer is registered with).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from disk_images.state import UpgradeStatus
from sync_server import eligibility, rollouts, sites, upsert, vm_images
from sync_server.api_common import (
    ACTIVE,
    REPORTABLE,
    Admin,
    ApiError,
    Caller,
    Principal,
    active_assignment,
    assignment_doc,
    computer_doc,
    db_session,
    kit_or_404,
    reconcile,
    row_or_404,
    server_state,
    token_doc,
)
from sync_server.models import Assignment, Computer, Kit, Site, Token, utc_now
from sync_server.schemas import (
    AssignmentDoc,
    AssignRequest,
    CheckinRequest,
    CheckinResponse,
    ComputerDoc,
    NewTokenDoc,
    StatusReport,
    TokenDoc,
    TokenRequest,
    UpdateOffer,
    VmOffer,
)
from sync_server.tokens import TokenRole, new_token, token_digest

router = APIRouter()


@router.post("/api/v1/tokens", response_model=NewTokenDoc, status_code=201)
def create_token(body: TokenRequest, caller: Admin, request: Request) -> NewTokenDoc:
    """A computer enrolment token; it binds to the first computer that checks in with it."""
    token = new_token()
    with db_session(request) as session, session.begin():
        row = Token(name=body.name or "", role=TokenRole.COMPUTER.value, digest=token_digest(token))
        session.add(row)
        session.flush()
        doc = token_doc(row)
    return NewTokenDoc(**doc.model_dump(), token=token)


@router.get("/api/v1/tokens", response_model=list[TokenDoc])
def list_tokens(caller: Admin, request: Request) -> list[TokenDoc]:
    with db_session(request) as session:
        return [token_doc(t) for t in session.scalars(select(Token).order_by(Token.id))]


@router.post("/api/v1/tokens/{token_id}/revoke", response_model=TokenDoc)
def revoke_token(token_id: int, caller: Admin, request: Request) -> TokenDoc:
    with db_session(request) as session, session.begin():
        row = row_or_404(session, Token, token_id, "token")
        if row.role == TokenRole.ADMIN:
            raise ApiError(409, "the admin token cannot be revoked through the API")
        row.revoked_at = row.revoked_at or utc_now()
        return token_doc(row)


@router.get("/api/v1/computers", response_model=list[ComputerDoc])
def list_computers(caller: Admin, request: Request) -> list[ComputerDoc]:
    with db_session(request) as session:
        computers = session.scalars(select(Computer).order_by(Computer.id))
        return [computer_doc(session, c) for c in computers]


@router.get("/api/v1/computers/{computer_id}", response_model=ComputerDoc)
def get_computer(computer_id: int, caller: Caller, request: Request) -> ComputerDoc:
    if not caller.may_see_computer(computer_id):
        raise ApiError(403, "a computer token may read only its own computer")
    with db_session(request) as session:
        return computer_doc(session, row_or_404(session, Computer, computer_id, "computer"))


# --- assignments --------------------------------------------------------------------


@router.get("/api/v1/kits/{kit_id}/assignments", response_model=list[AssignmentDoc])
def kit_assignments(kit_id: int, caller: Admin, request: Request) -> list[AssignmentDoc]:
    """The kit's "Computers" tab: the Upgrade column per computer."""
    with db_session(request) as session:
        kit = kit_or_404(session, kit_id)
        rows = session.scalars(select(Assignment).where(Assignment.kit_id == kit_id))
        return [assignment_doc(a, kit) for a in rows]


@router.post("/api/v1/kits/{kit_id}/assignments", response_model=list[AssignmentDoc])
def assign(
    kit_id: int, body: AssignRequest, caller: Admin, request: Request
) -> list[AssignmentDoc]:
    """Assign the kit to computers, all or none: a computer whose running version is not
    on the kit's upgrade path (a barrier, a downgrade, the same version) refuses the lot."""
    with db_session(request) as session, session.begin():
        kit = kit_or_404(session, kit_id)
        graph = eligibility.kit_graph(session)
        problems: list[str] = []
        chosen: list[Computer] = []
        for computer_id in dict.fromkeys(body.computers):
            computer = session.get(Computer, computer_id)
            if computer is None:
                problems.append(f"computer {computer_id}: no such computer")
                continue
            why = eligibility.refusal(session, computer, kit, graph, retry=body.retry)
            if why is not None:
                problems.append(f"computer {computer.id} ({computer.name}): {why}")
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
                # Assigned by hand (a retry too): no rollout holds or withdraws it.
                row.status, row.detail, row.rollout_id = UpgradeStatus.PENDING.value, "", None
                row.updated_at = utc_now()
            site = session.get(Site, computer.site_id) if computer.site_id is not None else None
            if site is not None and not sites.has_kit(site, kit):
                sites.ensure_relay(session, site, kit, again=True)
            session.flush()
            docs.append(assignment_doc(row, kit))
        return docs


# --- the computer's side ------------------------------------------------------------


@router.post("/api/v1/checkin", response_model=CheckinResponse)
def checkin(body: CheckinRequest, caller: Caller, request: Request) -> CheckinResponse:
    """A computer reports what it runs; the answer names an assigned kit, if any."""
    if caller.role is not TokenRole.COMPUTER:
        raise ApiError(403, "check-in needs a computer token (engine-sync token create)")
    try:
        engine_status = UpgradeStatus(body.upgrade_status)
    except ValueError:
        raise ApiError(422, f"unknown upgrade status {body.upgrade_status!r}") from None
    seen: dict[str, object] = {
        "disk_id": body.disk_id,
        "running_version": body.version,
        "active_slot": body.active_slot,
        "slots": dict(body.slots),
        "engine_status": engine_status.value,
        "vms": {"vms": [vm.model_dump() for vm in body.vms]},
        "last_contact": utc_now(),
    }
    writing = server_state(request).db.writing()
    with writing, db_session(request) as session, session.begin():
        site = sites.forwarding_site(session, request)
        seen["site_id"] = site.id if site is not None else None
        # The common case, a computer that checked in before, is one UPDATE (no ORM load):
        # check-ins are most of the server's traffic.
        computer_id = caller.computer_id
        if computer_id is not None:
            done = session.execute(
                update(Computer).where(Computer.id == computer_id).values(**seen),
                execution_options={"synchronize_session": False},
            )
            if getattr(done, "rowcount", 1) == 0:
                computer_id = None
        if computer_id is None:
            computer_id = _enrol(session, caller, body, seen)
        # Loaded by its key (no query when just created): the VM offers, the upgrade's
        # reconcile and the rollouts read it.
        computer = session.get(Computer, computer_id)
        assert computer is not None
        vm_offers = [
            VmOffer(**vars(o)) for o in vm_images.checked_in(session, computer, body.vm_failures)
        ]
        offer = None
        assignment = active_assignment(session, computer_id)
        if assignment is not None:
            reconcile(session, computer, assignment)
        # What this check-in says may move a rollout on (and start this computer's stage).
        rollouts.on_contact(session, computer_id)
        assignment = active_assignment(session, computer_id)
        if assignment is not None:
            waiting = (UpgradeStatus.PENDING, UpgradeStatus.READY_TO_DOWNLOAD)
            if assignment.status in waiting and not rollouts.holds_offer(session, assignment):
                signal_or_wait_for_site(session, assignment, site)
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
            computer_id=computer_id,
            checkin_interval=server_state(request).checkin_interval,
            update=offer,
            vms=vm_offers,
        )


def signal_or_wait_for_site(session: Session, assignment: Assignment, site: Site | None) -> None:
    """Signalled, unless the computer is behind a remote server that lacks the kit: then
    "Ready to download update" and a relay task brings the kit there."""
    status = UpgradeStatus.SIGNALLED
    if site is not None:
        kit = session.get(Kit, assignment.kit_id)
        assert kit is not None
        if not sites.has_kit(site, kit):
            sites.ensure_relay(session, site, kit, again=False)
            status = UpgradeStatus.READY_TO_DOWNLOAD
    if assignment.status != status:
        assignment.status, assignment.updated_at = status.value, utc_now()


def _enrol(session: Session, caller: Principal, body: CheckinRequest, seen: dict[str, Any]) -> int:
    """The computer of the caller's token, created at its first check-in. Simultaneous first
    check-ins with one token (an agent's retry while the first is in flight, two agents on one
    disk) all get the same computer: the insert does nothing when another one already holds
    the token (computers.token_id is unique; on PostgreSQL it waits for that one's commit),
    and the row is read back; the later check-in's report is written over it."""
    token = session.get(Token, caller.token_id)
    assert token is not None
    values = {
        "name": token.name or body.disk_id or "computer",
        "first_contact": seen["last_contact"],
        "token_id": token.id,
        **seen,
    }
    inserted = session.execute(
        upsert.insert(session, Computer)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[Computer.token_id])
    )
    computer_id = session.scalars(select(Computer.id).where(Computer.token_id == token.id)).one()
    if getattr(inserted, "rowcount", 1) == 0:
        session.execute(
            update(Computer).where(Computer.id == computer_id).values(**seen),
            execution_options={"synchronize_session": False},
        )
    token.computer_id = computer_id
    return computer_id


@router.post("/api/v1/assignments/{assignment_id}/status", response_model=AssignmentDoc)
def report_status(
    assignment_id: int, body: StatusReport, caller: Caller, request: Request
) -> AssignmentDoc:
    """The computer reports how its upgrade went (Installed, Failed with why, Blank)."""
    with db_session(request) as session, session.begin():
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
        rollouts.on_contact(session, row.computer_id)
        kit = session.get(Kit, row.kit_id)
        assert kit is not None
        return assignment_doc(row, kit)
