"""Computers: the list (running version, last contact, site, Upgrade) and a computer's
Software tab, where a version is assigned to that one computer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from sync_server import api_fleet, upgrade_graph
from sync_server.api_common import ApiError, active_assignment, db_session
from sync_server.console.auth import ConsoleRefusal, Operator, checked_form, no_such, operator
from sync_server.console.rendering import page
from sync_server.models import Assignment, Computer, Kit, Site
from sync_server.schemas import AssignRequest

# The Site column of a computer that checks in with this (the main) server itself.
THIS_SERVER = "This server"

# Every page here needs a signed-in operator.
router = APIRouter(dependencies=[Depends(operator)])


@dataclass(frozen=True)
class ComputerRow:
    id: int
    name: str
    running_version: str
    last_contact: datetime
    site: str
    upgrade: str  # the active assignment's status ("" is Blank)
    upgrade_version: str


@dataclass(frozen=True)
class KitChoice:
    kit_id: int
    version: str
    allowed: bool
    reason: str
    status: str | None  # this computer's Upgrade status for the kit, None if never assigned
    detail: str


def computer_rows(request: Request) -> list[ComputerRow]:
    with db_session(request) as db:
        rows = []
        for c in db.scalars(select(Computer).order_by(Computer.name, Computer.id)):
            active = active_assignment(db, c.id)
            kit = db.get(Kit, active.kit_id) if active is not None else None
            site = db.get(Site, c.site_id) if c.site_id is not None else None
            rows.append(
                ComputerRow(
                    c.id,
                    c.name,
                    c.running_version,
                    c.last_contact,
                    site.name if site is not None else THIS_SERVER,
                    active.status if active is not None else "",
                    kit.version if kit is not None else "",
                )
            )
        return rows


def software_context(request: Request, computer_id: int) -> dict[str, object]:
    with db_session(request) as db:
        computer = db.get(Computer, computer_id)
        if computer is None:
            raise no_such("computer", str(computer_id), "Computers")
        kits = list(db.scalars(select(Kit).order_by(Kit.id)))
        graph = [(k.version, k.upgrade_from_versions) for k in kits]
        mine = {
            a.kit_id: a
            for a in db.scalars(select(Assignment).where(Assignment.computer_id == computer_id))
        }
        choices = []
        for kit in kits:
            decision = upgrade_graph.decide(
                computer.running_version, kit.version, kit.upgrade_from_versions, graph
            )
            found = mine.get(kit.id)
            choices.append(
                KitChoice(
                    kit.id,
                    kit.version,
                    decision.allowed,
                    decision.reason,
                    found.status if found is not None else None,
                    found.detail if found is not None else "",
                )
            )
        db.expunge(computer)
        return {"computer": computer, "choices": choices}


@router.get("/computers", response_class=HTMLResponse)
def computers(request: Request) -> Response:
    return page(request, "computers.html", {"rows": computer_rows(request)})


@router.get("/computers/rows", response_class=HTMLResponse)
def computers_rows(request: Request) -> Response:
    return page(request, "computers_rows.html", {"rows": computer_rows(request)})


@router.get("/computers/{computer_id}/software", response_class=HTMLResponse)
def computer_software(computer_id: int, request: Request) -> Response:
    context = software_context(request, computer_id)
    return page(request, "computer_software.html", {**context, "summary": "", "refused": []})


@router.get("/computers/{computer_id}/software/rows", response_class=HTMLResponse)
def computer_software_rows(computer_id: int, request: Request) -> Response:
    return page(request, "software_rows.html", software_context(request, computer_id))


@router.post("/computers/{computer_id}/software", response_class=HTMLResponse)
async def assign_version(computer_id: int, request: Request, who: Operator) -> Response:
    form = await checked_form(request)
    software_context(request, computer_id)  # the computer exists
    value = str(form.get("kit", ""))
    if not value.isdigit():
        raise ConsoleRefusal(
            400,
            "No version chosen",
            "The form named no Engine version: nothing was assigned.",
            "Choose a version in the list, then Assign.",
        )
    kit_id = int(value)
    with db_session(request) as db:
        if db.get(Kit, kit_id) is None:
            raise no_such("kit", str(kit_id), "the Software Library", done="assigned")
    status, refused = 200, []
    try:
        (done,) = api_fleet.assign(kit_id, AssignRequest(computers=[computer_id]), who, request)
        summary = f"Engine {done.kit_version} assigned."
    except ApiError as exc:
        summary, refused, status = exc.error, list(exc.details), exc.status
    context = {**software_context(request, computer_id), "summary": summary, "refused": refused}
    return page(request, "computer_software.html", context, status)
