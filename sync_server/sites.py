"""The main server's side of its remote (branch-office) servers: the sites, what each one
last reported, the kits complete in its cache, and the relay tasks that bring a kit there.

A remote forwards its computers' check-ins with its own site token in `SITE_HEADER`; the main
server records that computer's site and, while the kit assigned to it is not at the site yet,
shows it as "Ready to download update" and makes sure a relay task exists. The remote runs
the relay (it downloads with HTTP Range at its bandwidth) and reports its progress here.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from sync_server.api_common import ApiError
from sync_server.client import SITE_HEADER
from sync_server.models import Kit, Site, Task, TaskKind, TaskState, Token, utc_now
from sync_server.tokens import TokenRole, digest_matches, token_digest

# A remote that has not been heard of for this many of its contact intervals is stopped
# (killed, or its link is down): it no longer holds up the server's upgrade.
SILENT_INTERVALS = 3
MIN_SILENCE = timedelta(seconds=5)
ACTIVE_STATES = (TaskState.QUEUED.value, TaskState.RUNNING.value)


def site_of_token(session: Session, token: str) -> Site | None:
    row = session.scalars(select(Token).where(Token.digest == token_digest(token))).first()
    if (
        row is None
        or not digest_matches(token, row.digest)
        or row.revoked_at is not None
        or row.role != TokenRole.SITE
        or row.site_id is None
    ):
        return None
    return session.get(Site, row.site_id)


def forwarding_site(session: Session, request: Request) -> Site | None:
    """The site a check-in came through (its token in SITE_HEADER), None when direct."""
    token = request.headers.get(SITE_HEADER)
    if token is None:
        return None
    site = site_of_token(session, token)
    if site is None:
        raise ApiError(401, "the remote server's site token is not valid (unknown or revoked)")
    return site


def has_kit(site: Site, kit: Kit) -> bool:
    return kit.id in site.kit_ids


def is_running(site: Site) -> bool:
    """Running: it said so at its last contact, and that contact is recent."""
    if not site.running or site.last_contact is None:
        return False
    silence = max(MIN_SILENCE, timedelta(seconds=SILENT_INTERVALS * site.contact_interval))
    return utc_now() - site.last_contact <= silence


def relay_tasks(session: Session, site: Site, kit: Kit) -> list[Task]:
    return list(
        session.scalars(
            select(Task)
            .where(
                Task.kind == TaskKind.RELAY_KIT.value,
                Task.site_id == site.id,
                Task.kit_id == kit.id,
            )
            .order_by(Task.id)
        )
    )


def ensure_relay(session: Session, site: Site, kit: Kit, *, again: bool) -> None:
    """A relay task for `kit` to `site` (which lacks it) unless one is active. After one
    that failed or was cancelled, only when `again` (a new assignment): a check-in never
    undoes an operator's cancel."""
    tasks = relay_tasks(session, site, kit)
    if any(t.state in ACTIVE_STATES for t in tasks):
        return
    gave_up = (TaskState.FAILED.value, TaskState.CANCELLED.value)
    if tasks and tasks[-1].state in gave_up and not again:
        return
    session.add(
        Task(
            kind=TaskKind.RELAY_KIT.value,
            source=f"{kit.version} to site {site.name}",
            kit_id=kit.id,
            site_id=site.id,
        )
    )
    session.flush()


def active_relays(session: Session, site: Site) -> list[Task]:
    return list(
        session.scalars(
            select(Task)
            .where(
                Task.kind == TaskKind.RELAY_KIT.value,
                Task.site_id == site.id,
                Task.state.in_(ACTIVE_STATES),
            )
            .order_by(Task.id)
        )
    )


def running_sites(session: Session) -> list[str]:
    """Each remote server still running, as the upgrade refusal names it."""
    return [
        f"site {s.id} ({s.name}) runs Synchronizer {s.version or 'unknown'}, last contact "
        f"{s.last_contact.isoformat(timespec='seconds') if s.last_contact else 'never'}"
        for s in session.scalars(select(Site).order_by(Site.id))
        if is_running(s)
    ]
