"""The console as a sub-application mounted at `/console` on the API's app: its own session
middleware (the JSON API stays bearer-token only), static files, routers and error pages."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware

from sync_server.console import auth, fleet, library, rollout_pages, task_pages, vm_pages
from sync_server.console.auth import (
    SESSION_COOKIE,
    SESSION_LIFETIME,
    ConsoleRefusal,
    SignInRequired,
    ensure_console_secret,
)
from sync_server.console.rendering import page
from sync_server.state import ServerState

CONSOLE_PATH = "/console"


def _error_page(request: Request, status: int, title: str, message: str, hint: str) -> Response:
    context = {"title": title, "message": message, "hint": hint, "status": status}
    return page(request, "error.html", context, status)


def build_console(state: ServerState) -> FastAPI:
    app = FastAPI(title="Synchronizer console", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.sync = state
    app.add_middleware(
        SessionMiddleware,
        secret_key=ensure_console_secret(state.data_dir),
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_LIFETIME,
        path=CONSOLE_PATH,
        same_site="strict",
    )
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    @app.exception_handler(ConsoleRefusal)
    async def refused(request: Request, exc: ConsoleRefusal) -> Response:
        return _error_page(request, exc.status, exc.title, exc.message, exc.hint)

    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, exc: SignInRequired) -> Response:
        target = str(request.url_for("login_page")) + ("?expired=1" if exc.expired else "")
        if request.headers.get("hx-request"):
            # A live fragment of a page whose session ended: htmx takes the whole page there.
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            return _error_page(
                request,
                404,
                "Page not found",
                f"The console has no page {request.url.path}.",
                "Use the menu: Software Library, Computers, Rollouts, Virtual Machines or Tasks.",
            )
        return _error_page(request, exc.status_code, "Request refused", str(exc.detail), "")

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        where = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in exc.errors())
        return _error_page(
            request,
            404,
            "Page not found",
            f"The address {request.url.path} is not valid ({where}): nothing was changed.",
            "Use the menu: Software Library, Computers, Rollouts, Virtual Machines or Tasks.",
        )

    app.include_router(auth.router)
    app.include_router(library.router)
    app.include_router(fleet.router)
    app.include_router(task_pages.router)
    app.include_router(rollout_pages.router)
    app.include_router(vm_pages.router)
    return app
