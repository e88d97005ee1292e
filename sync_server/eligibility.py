"""May a computer be offered a kit? One rule for the Upgrade box (`assign`) and for rollouts:
the upgrade graph (barriers, downgrades, the same version), no other kit in flight, and a kit
that already failed there is offered again only when the operator says so (`retry`).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from disk_images.state import UpgradeStatus
from sync_server import upgrade_graph
from sync_server.api_common import active_assignment
from sync_server.models import Assignment, Computer, Kit

Graph = list[tuple[str, list[str]]]


def kit_graph(session: Session) -> Graph:
    return [(k.version, k.upgrade_from_versions) for k in session.scalars(select(Kit))]


def assignment_of(session: Session, kit: Kit, computer: Computer) -> Assignment | None:
    return session.scalars(
        select(Assignment).where(Assignment.kit_id == kit.id, Assignment.computer_id == computer.id)
    ).first()


def refusal(
    session: Session, computer: Computer, kit: Kit, graph: Graph, *, retry: bool = False
) -> str | None:
    """Why `kit` may not be offered to `computer` now, or None when it may."""
    decision = upgrade_graph.decide(
        computer.running_version, kit.version, kit.upgrade_from_versions, graph
    )
    if not decision.allowed:
        return decision.reason
    active = active_assignment(session, computer.id)
    if active is not None and active.kit_id != kit.id:
        return f"another kit is assigned (status {UpgradeStatus(active.status).label})"
    own = assignment_of(session, kit, computer)
    if own is not None and own.status == UpgradeStatus.FAILED and not retry:
        why = f" ({own.detail})" if own.detail else ""
        return (
            f"Engine {kit.version} failed there{why}; it is offered again only with "
            f"engine-sync assign {kit.version} --retry --computer {computer.id}"
        )
    return None
