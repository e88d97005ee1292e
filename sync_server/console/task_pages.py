"""Tasks: the list with the guide's filter (every running, queued or paused task, whatever
its date), a task's properties, and Cancel."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from sync_server.api_common import db_session, server_state
from sync_server.console.auth import ConsoleRefusal, checked_form, no_such, operator
from sync_server.console.rendering import page
from sync_server.models import Task, TaskState

# "paused" is the guide's third active state; no task of this server pauses yet.
ACTIVE_STATES = (TaskState.RUNNING.value, TaskState.QUEUED.value, "paused")
FILTERS = {"active": "All active tasks (running, queued or paused, any date)", "all": "All tasks"}

# Every page here needs a signed-in operator.
router = APIRouter(dependencies=[Depends(operator)])


def task_list(request: Request, show: str) -> list[Task]:
    query = select(Task).order_by(Task.id.desc())
    if show == "active":
        query = query.where(Task.state.in_(ACTIVE_STATES))
    with db_session(request) as db:
        tasks = list(db.scalars(query))
        db.expunge_all()
        return tasks


def checked_filter(show: str) -> str:
    if show not in FILTERS:
        raise ConsoleRefusal(
            400,
            "Unknown filter",
            f"{show!r} is not a task filter.",
            "Choose one of the filters in the list: " + ", ".join(FILTERS.values()),
        )
    return show


def task_or_refusal(request: Request, task_id: int) -> Task:
    with db_session(request) as db:
        task = db.get(Task, task_id)
        if task is None:
            raise no_such("task", str(task_id), "Tasks")
        db.expunge(task)
        return task


@router.get("/tasks", response_class=HTMLResponse)
def tasks(request: Request, show: str = "active") -> Response:
    show = checked_filter(show)
    context = {"tasks": task_list(request, show), "show": show, "filters": FILTERS}
    return page(request, "tasks.html", context)


@router.get("/tasks/rows", response_class=HTMLResponse)
def tasks_rows(request: Request, show: str = "active") -> Response:
    show = checked_filter(show)
    return page(request, "tasks_rows.html", {"tasks": task_list(request, show), "show": show})


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
def task_page(task_id: int, request: Request) -> Response:
    context = {"task": task_or_refusal(request, task_id), "summary": ""}
    return page(request, "task.html", context)


@router.get("/tasks/{task_id}/properties", response_class=HTMLResponse)
def task_properties(task_id: int, request: Request) -> Response:
    return page(request, "task_properties.html", {"task": task_or_refusal(request, task_id)})


@router.post("/tasks/{task_id}/cancel", response_class=HTMLResponse)
async def cancel(task_id: int, request: Request) -> Response:
    await checked_form(request)
    task_or_refusal(request, task_id)
    if server_state(request).runner.cancel(task_id):
        summary, status = f"Task {task_id} was cancelled.", 200
    else:
        summary, status = f"Task {task_id} had already finished: nothing was cancelled.", 409
    server_state(request).runner.wait_finished(task_id, 10.0)
    context = {"task": task_or_refusal(request, task_id), "summary": summary}
    return page(request, "task.html", context, status)
