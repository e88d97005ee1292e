"""Software Library: the kits, the Import steps (Import -> Engine Update -> Specify file ->
Finish) and a kit's Computers tab (the Upgrade box and the Upgrade column)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from sync_server import api_fleet
from sync_server.api_common import ACTIVE, ApiError, db_session, server_state
from sync_server.console.auth import ConsoleRefusal, Operator, checked_form, no_such, operator
from sync_server.console.rendering import page
from sync_server.models import Assignment, Computer, Kit, Task, TaskKind, TaskState
from sync_server.schemas import AssignRequest

ENGINE_UPDATE = "Engine Update"
KIT_KINDS = (ENGINE_UPDATE,)

# Every page here needs a signed-in operator.
router = APIRouter(dependencies=[Depends(operator)])


@dataclass(frozen=True)
class UpgradeRow:
    computer_id: int
    name: str
    running_version: str
    status: str  # UpgradeStatus value; "" is Blank
    detail: str
    assigned: bool  # ticked: an assignment of this kit is in progress


def kit_or_refusal(request: Request, kit_id: int) -> Kit:
    with db_session(request) as db:
        kit = db.get(Kit, kit_id)
        if kit is None:
            raise no_such("kit", str(kit_id), "the Software Library")
        db.expunge(kit)
        return kit


def upgrade_rows(request: Request, kit_id: int) -> list[UpgradeRow]:
    """One row per computer: the Upgrade column for this kit."""
    active = {s.value for s in ACTIVE}
    with db_session(request) as db:
        by_computer = {
            a.computer_id: a
            for a in db.scalars(select(Assignment).where(Assignment.kit_id == kit_id))
        }
        rows = []
        for computer in db.scalars(select(Computer).order_by(Computer.name, Computer.id)):
            found = by_computer.get(computer.id)
            status = found.status if found is not None else ""
            rows.append(
                UpgradeRow(
                    computer.id,
                    computer.name,
                    computer.running_version,
                    status,
                    found.detail if found is not None and status == "Failed" else "",
                    status in active,
                )
            )
        return rows


@router.get("/", include_in_schema=False)
def home(request: Request) -> Response:
    return RedirectResponse(request.url_for("library"), status_code=303)


@router.get("/library", response_class=HTMLResponse)
def library(request: Request) -> Response:
    with db_session(request) as db:
        kits = list(db.scalars(select(Kit).order_by(Kit.imported_at.desc(), Kit.id.desc())))
        importing = list(
            db.scalars(
                select(Task)
                .where(
                    Task.kind == TaskKind.IMPORT_KIT,
                    Task.state.in_([TaskState.QUEUED, TaskState.RUNNING]),
                )
                .order_by(Task.id)
            )
        )
        return page(request, "library.html", {"kits": kits, "importing": importing})


@router.get("/library/import", response_class=HTMLResponse)
def import_kind(request: Request) -> Response:
    return page(request, "import_kind.html", {"kinds": KIT_KINDS})


@router.get("/library/import/file", response_class=HTMLResponse)
def import_file(request: Request, kind: str = ENGINE_UPDATE) -> Response:
    if kind not in KIT_KINDS:
        raise ConsoleRefusal(
            400,
            "Unknown kit type",
            f"{kind!r} is not a kit type this server imports.",
            f"Choose {ENGINE_UPDATE!r} in the first Import step.",
        )
    state = server_state(request)
    return page(
        request,
        "import_file.html",
        {"kind": kind, "files": state.file_import_isos(), "folder": str(state.file_import)},
    )


@router.post("/library/import")
async def start_import(request: Request) -> Response:
    form = await checked_form(request)
    name = str(form.get("file", ""))
    task_id = server_state(request).import_dropped(name) if name else None
    if task_id is None:
        raise ConsoleRefusal(
            409,
            "File not found",
            f"{name or 'No file'} is not in the FileImport folder (any more): nothing was "
            "imported.",
            "Copy the Engine ISO into the FileImport folder, then start the Import again.",
        )
    return RedirectResponse(request.url_for("task_page", task_id=task_id), status_code=303)


@router.get("/kits/{kit_id}", include_in_schema=False)
def kit_page(kit_id: int, request: Request) -> Response:
    kit_or_refusal(request, kit_id)
    return RedirectResponse(request.url_for("kit_computers", kit_id=kit_id), status_code=303)


@router.get("/kits/{kit_id}/computers", response_class=HTMLResponse)
def kit_computers(kit_id: int, request: Request) -> Response:
    kit = kit_or_refusal(request, kit_id)
    context = {"kit": kit, "rows": upgrade_rows(request, kit_id), "refused": [], "summary": ""}
    return page(request, "kit_computers.html", context)


@router.get("/kits/{kit_id}/computers/status", response_class=HTMLResponse)
def kit_computers_status(kit_id: int, request: Request) -> Response:
    """The Upgrade column's cells only (htmx swaps them in by id, out of band), so a box an
    operator is ticking is never redrawn under them."""
    kit_or_refusal(request, kit_id)
    return page(request, "kit_status.html", {"rows": upgrade_rows(request, kit_id)})


@router.post("/kits/{kit_id}/computers", response_class=HTMLResponse)
async def assign_ticked(kit_id: int, request: Request, who: Operator) -> Response:
    form = await checked_form(request)
    kit = kit_or_refusal(request, kit_id)
    already = {r.computer_id for r in upgrade_rows(request, kit_id) if r.assigned}
    ticked = []
    for value in form.getlist("upgrade"):
        if isinstance(value, str) and value.isdigit() and int(value) not in already:
            ticked.append(int(value))
    refused: list[str] = []
    summary = ""
    status = 200
    if not ticked:
        summary = "No new computer was ticked: nothing was assigned."
    else:
        try:
            done = api_fleet.assign(kit_id, AssignRequest(computers=ticked), who, request)
            summary = f"Engine {kit.version} assigned to {len(done)} computer(s)."
        except ApiError as exc:
            summary, refused, status = exc.error, list(exc.details), exc.status
    context = {
        "kit": kit,
        "rows": upgrade_rows(request, kit_id),
        "refused": refused,
        "summary": summary,
    }
    return page(request, "kit_computers.html", context, status)
