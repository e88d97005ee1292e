"""Rollouts: the list, the create form (kit, test-group computers, stages, thresholds; the
server's own refusals shown on the form) and a rollout's page, each stage and its computers'
statuses updating live, with Pause / Resume / Cancel. Every change goes through
`sync_server.rollouts`, the functions the JSON API calls."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from starlette.datastructures import FormData

from sync_server import rollouts
from sync_server.api_common import ApiError, db_session
from sync_server.console.auth import ConsoleRefusal, checked_form, no_such, operator
from sync_server.console.rendering import page
from sync_server.models import Computer, Kit, Rollout
from sync_server.rollout_schemas import RolloutDoc, RolloutRequest
from sync_server.rollout_state import RolloutEvent, RolloutState

# Every page here needs a signed-in operator.
router = APIRouter(dependencies=[Depends(operator)])

ACTIONS = {
    "pause": RolloutEvent.PAUSE,
    "resume": RolloutEvent.RESUME,
    "cancel": RolloutEvent.CANCEL,
}


@dataclass(frozen=True)
class RolloutForm:
    """What the operator typed, shown again with the problems when the server refuses it."""

    kit: str = ""
    name: str = ""
    test_group: tuple[str, ...] = ()
    stages: str = "30%,100%"
    success_threshold: str = "80"
    error_threshold: str = "20"

    @classmethod
    def posted(cls, form: FormData) -> RolloutForm:
        def text(key: str) -> str:
            value = form.get(key, "")
            return value.strip() if isinstance(value, str) else ""

        return cls(
            kit=text("kit"),
            name=text("name"),
            test_group=tuple(v for v in form.getlist("test_group") if isinstance(v, str)),
            stages=text("stages"),
            success_threshold=text("success_threshold"),
            error_threshold=text("error_threshold"),
        )

    def request(self) -> RolloutRequest:
        """The API's own request document (its validation is the form's)."""
        return RolloutRequest.model_validate(
            {
                "kit_id": self.kit,
                "name": self.name or None,
                "test_group": list(self.test_group),
                "stages": [p.strip() for p in self.stages.split(",") if p.strip()],
                "success_threshold": self.success_threshold.removesuffix("%").strip(),
                "error_threshold": self.error_threshold.removesuffix("%").strip(),
            }
        )


FIELD_LABELS = {
    "kit_id": "Kit",
    "name": "Name",
    "test_group": "Test group",
    "stages": "Stages",
    "success_threshold": "Success threshold",
    "error_threshold": "Error threshold",
}


def _validation_problems(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        where = str(error["loc"][0]) if error["loc"] else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{FIELD_LABELS.get(where, where)}: {message}")
    return problems


def rollout_doc(request: Request, rollout_id: int) -> RolloutDoc:
    with db_session(request) as session:
        rollout = session.get(Rollout, rollout_id)
        if rollout is None:
            raise no_such("rollout", str(rollout_id), "Rollouts")
        return rollouts.rollout_doc(session, rollout)


def _form_context(request: Request, form: RolloutForm, problems: list[str]) -> dict[str, object]:
    with db_session(request) as session:
        kits = [(k.id, k.version) for k in session.scalars(select(Kit).order_by(Kit.id))]
        computers = [
            (c.id, c.name, c.running_version)
            for c in session.scalars(select(Computer).order_by(Computer.name, Computer.id))
        ]
    return {"form": form, "problems": problems, "kits": kits, "computers": computers}


@router.get("/rollouts", response_class=HTMLResponse)
def rollout_list(request: Request) -> Response:
    with db_session(request) as session:
        docs = [
            rollouts.rollout_doc(session, r)
            for r in session.scalars(select(Rollout).order_by(Rollout.id.desc()))
        ]
    return page(request, "rollouts.html", {"rollouts": docs})


@router.get("/rollouts/new", response_class=HTMLResponse)
def rollout_new(request: Request) -> Response:
    return page(request, "rollout_new.html", _form_context(request, RolloutForm(), []))


@router.post("/rollouts", response_class=HTMLResponse)
async def rollout_create(request: Request) -> Response:
    form = RolloutForm.posted(await checked_form(request))
    try:
        body = form.request()
    except ValidationError as exc:
        context = _form_context(request, form, _validation_problems(exc))
        return page(request, "rollout_new.html", context, 422)
    try:
        with db_session(request) as session, session.begin():
            rollout_id = rollouts.create_rollout(session, body).id
    except ApiError as exc:
        problems = [exc.error, *exc.details]
        return page(request, "rollout_new.html", _form_context(request, form, problems), exc.status)
    return RedirectResponse(request.url_for("rollout_page", rollout_id=rollout_id), status_code=303)


@router.get("/rollouts/{rollout_id}", response_class=HTMLResponse)
def rollout_page(rollout_id: int, request: Request) -> Response:
    context = {"rollout": rollout_doc(request, rollout_id), "summary": "", "refused": False}
    return page(request, "rollout.html", context)


@router.get("/rollouts/{rollout_id}/status", response_class=HTMLResponse)
def rollout_status(rollout_id: int, request: Request) -> Response:
    """The stages and targets only (htmx replaces them every second)."""
    return page(request, "rollout_status.html", {"rollout": rollout_doc(request, rollout_id)})


@router.post("/rollouts/{rollout_id}/{action}", response_class=HTMLResponse)
async def rollout_act(rollout_id: int, action: str, request: Request) -> Response:
    await checked_form(request)
    event = ACTIONS.get(action)
    if event is None:
        raise ConsoleRefusal(
            404,
            "Unknown action",
            f"A rollout cannot {action!r}: nothing was changed.",
            "Use the Pause, Resume or Cancel button on the rollout's page.",
        )
    rollout_doc(request, rollout_id)  # the rollout exists
    summary, refused, status = "", False, 200
    try:
        with db_session(request) as session, session.begin():
            state = RolloutState(rollouts.act(session, rollout_id, event).state)
        summary = f"Rollout {rollout_id} is {state.value}."
    except ApiError as exc:
        summary, refused, status = exc.error + ": nothing was changed.", True, exc.status
    context = {"rollout": rollout_doc(request, rollout_id), "summary": summary, "refused": refused}
    return page(request, "rollout.html", context, status)
