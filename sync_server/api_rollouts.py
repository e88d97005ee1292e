"""The rollout API: create a staged rollout of a kit (test group first, then stages), read
one or all, and the operator's pause, resume and cancel. Admin token only. The rollouts
move by themselves at the computers' check-ins (`sync_server.rollouts.on_contact`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select

from sync_server import rollouts
from sync_server.api_common import Admin, db_session
from sync_server.models import Rollout
from sync_server.rollout_schemas import RolloutDoc, RolloutRequest
from sync_server.rollout_state import RolloutEvent

router = APIRouter()


@router.post("/api/v1/rollouts", response_model=RolloutDoc, status_code=201)
def create_rollout(body: RolloutRequest, caller: Admin, request: Request) -> RolloutDoc:
    """Start a rollout: its test group is Pending at once; computers that cannot take the
    kit are listed as skipped with the reason."""
    with db_session(request) as session, session.begin():
        rollout = rollouts.create_rollout(session, body)
        return rollouts.rollout_doc(session, rollout)


@router.get("/api/v1/rollouts", response_model=list[RolloutDoc])
def list_rollouts(caller: Admin, request: Request) -> list[RolloutDoc]:
    with db_session(request) as session:
        return [
            rollouts.rollout_doc(session, r)
            for r in session.scalars(select(Rollout).order_by(Rollout.id))
        ]


@router.get("/api/v1/rollouts/{rollout_id}", response_model=RolloutDoc)
def get_rollout(rollout_id: int, caller: Admin, request: Request) -> RolloutDoc:
    """The rollout's state (and why it paused), each stage's tally and every target."""
    with db_session(request) as session:
        return rollouts.rollout_doc(session, rollouts.rollout_or_404(session, rollout_id))


def _act(request: Request, rollout_id: int, event: RolloutEvent) -> RolloutDoc:
    with db_session(request) as session, session.begin():
        return rollouts.rollout_doc(session, rollouts.act(session, rollout_id, event))


@router.post("/api/v1/rollouts/{rollout_id}/pause", response_model=RolloutDoc)
def pause_rollout(rollout_id: int, caller: Admin, request: Request) -> RolloutDoc:
    """Stop starting stages and offering the kit to Pending targets; in flight completes."""
    return _act(request, rollout_id, RolloutEvent.PAUSE)


@router.post("/api/v1/rollouts/{rollout_id}/resume", response_model=RolloutDoc)
def resume_rollout(rollout_id: int, caller: Admin, request: Request) -> RolloutDoc:
    """Go on, accepting the failures so far (a finished stage passes whatever its share)."""
    return _act(request, rollout_id, RolloutEvent.RESUME)


@router.post("/api/v1/rollouts/{rollout_id}/cancel", response_model=RolloutDoc)
def cancel_rollout(rollout_id: int, caller: Admin, request: Request) -> RolloutDoc:
    """Withdraw the kit from targets not yet Signalled; what is in flight completes."""
    return _act(request, rollout_id, RolloutEvent.CANCEL)
