"""The remote-server API: sites made and listed by the admin, and the remote's own side: its
contact (what it runs, which kits it holds; the answer lists the relays to run) and its
progress reports on a relay task.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sync_server import sites
from sync_server.api_common import Admin, ApiError, Caller, db_session, task_doc
from sync_server.models import Computer, Kit, Site, Task, TaskState, Token, utc_now
from sync_server.schemas import (
    NewSiteDoc,
    RelayJob,
    RelayReport,
    RelayState,
    SiteContact,
    SiteContactAnswer,
    SiteDoc,
    SiteRequest,
)
from sync_server.tokens import TokenRole, new_token, token_digest
from sync_server.vm_images import synchronizer_version

log = logging.getLogger(__name__)
router = APIRouter()


def site_doc(session: Session, site: Site) -> SiteDoc:
    kits = session.scalars(select(Kit.version).where(Kit.id.in_(site.kit_ids)).order_by(Kit.id))
    computers = session.scalar(
        select(func.count()).select_from(Computer).where(Computer.site_id == site.id)
    )
    return SiteDoc(
        id=site.id,
        name=site.name,
        version=site.version,
        running=sites.is_running(site),
        last_contact=site.last_contact,
        kits=list(kits),
        computers=int(computers or 0),
        relays=[task_doc(t) for t in sites.active_relays(session, site)],
    )


@router.post("/api/v1/sites", response_model=NewSiteDoc, status_code=201)
def create_site(body: SiteRequest, caller: Admin, request: Request) -> NewSiteDoc:
    """A remote server and its site token (shown once)."""
    token = new_token()
    with db_session(request) as session, session.begin():
        if session.scalars(select(Site).where(Site.name == body.name)).first() is not None:
            raise ApiError(
                409, f"a site named {body.name!r} exists", "engine-sync sites lists them"
            )
        site = Site(name=body.name)
        session.add(site)
        session.flush()
        session.add(
            Token(
                name=f"site {body.name}",
                role=TokenRole.SITE.value,
                digest=token_digest(token),
                site_id=site.id,
            )
        )
        session.flush()
        return NewSiteDoc(**site_doc(session, site).model_dump(), token=token)


@router.get("/api/v1/sites", response_model=list[SiteDoc])
def list_sites(caller: Admin, request: Request) -> list[SiteDoc]:
    with db_session(request) as session:
        return [site_doc(session, s) for s in session.scalars(select(Site).order_by(Site.id))]


def _own_site(session: Session, caller: Caller) -> Site:
    if caller.role is not TokenRole.SITE or caller.site_id is None:
        raise ApiError(403, "this call needs a site token (engine-sync site add NAME)")
    site = session.get(Site, caller.site_id, with_for_update=True)
    assert site is not None
    return site


@router.post("/api/v1/sites/self/contact", response_model=SiteContactAnswer)
def site_contact(body: SiteContact, caller: Caller, request: Request) -> SiteContactAnswer:
    """A remote reports itself; the answer lists the relay tasks it is to run, oldest first."""
    with db_session(request) as session, session.begin():
        site = _own_site(session, caller)
        ours = synchronizer_version(session)
        known = set(session.scalars(select(Kit.id).where(Kit.id.in_(body.kits))))
        site.version = body.version or ours
        site.running = body.running
        site.contact_interval = body.contact_interval
        site.kits = {"kits": sorted(known)}
        site.last_contact = utc_now()
        jobs = []
        for task in sites.active_relays(session, site) if body.running else []:
            kit = session.get(Kit, task.kit_id)
            if kit is None:
                continue
            jobs.append(
                RelayJob(
                    task_id=task.id,
                    kit_id=kit.id,
                    version=kit.version,
                    size=kit.size,
                    sha256=kit.sha256,
                    download=f"/api/v1/kits/{kit.id}/file",
                )
            )
        return SiteContactAnswer(name=site.name, synchronizer_version=ours, relays=jobs)


@router.post("/api/v1/sites/self/relays/{task_id}", response_model=RelayState)
def relay_report(task_id: int, body: RelayReport, caller: Caller, request: Request) -> RelayState:
    """The remote's progress on a relay; the answer's state says whether to go on."""
    with db_session(request) as session, session.begin():
        site = _own_site(session, caller)
        site.last_contact = utc_now()
        task = session.get(Task, task_id, with_for_update=True)
        if task is None or task.site_id != site.id:
            raise ApiError(404, f"no relay task {task_id} for site {site.name}")
        kit = session.get(Kit, task.kit_id) if task.kit_id is not None else None
        if TaskState(task.state).finished or kit is None:
            return RelayState(state=task.state)
        if task.state == TaskState.QUEUED:
            task.state, task.started_at = TaskState.RUNNING.value, utc_now()
        if body.resumed_from:
            log.info("task %d: site %s resumes at byte %d", task.id, site.name, body.resumed_from)
        if body.error is not None:
            task.state, task.error = TaskState.FAILED.value, body.error
            task.finished_at = utc_now()
        elif body.complete and body.received == kit.size:
            task.state, task.progress, task.finished_at = TaskState.SUCCEEDED.value, 1.0, utc_now()
            site.kits = {"kits": sorted({*site.kit_ids, kit.id})}
        else:
            task.progress = round(min(body.received, kit.size) / max(kit.size, 1), 3)
        return RelayState(state=task.state)
