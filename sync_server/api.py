"""The JSON API (`/api/v1/...`) on FastAPI; the OpenAPI document is served at `/openapi.json`.

Every call carries `Authorization: Bearer <token>`. The admin token may do everything; a
computer token may check in (which binds it to one computer at first use), report the status
of its own assignments, read its own computer and download the kits assigned to it; a site
token (a remote server) may report itself and its relays, download kits and forward its
computers' check-ins. Anything
else is 403; an unknown or revoked token is 401. Errors are `{"error", "hint", "details"}`.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from sync_server import (
    api_fleet,
    api_library,
    api_operators,
    api_ops,
    api_rollouts,
    api_sites,
    api_vms,
)
from sync_server.api_common import ApiError
from sync_server.console import CONSOLE_PATH, build_console
from sync_server.state import ServerState


def build_app(state: ServerState) -> FastAPI:
    app = FastAPI(
        title="Synchronizer",
        version="1",
        description="Engine update kits, computers and their upgrades (EngineKit).",
    )
    app.state.sync = state

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        body = {"error": exc.error, "hint": exc.hint, "details": list(exc.details)}
        return JSONResponse(body, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        ]
        body = {"error": "the request is not valid", "hint": None, "details": details}
        return JSONResponse(body, status_code=422)

    app.include_router(api_library.router)
    app.include_router(api_fleet.router)
    app.include_router(api_rollouts.router)
    app.mount(CONSOLE_PATH, build_console(state))
    app.include_router(api_vms.router)
    app.include_router(api_ops.router)
    app.include_router(api_sites.router)
    app.include_router(api_operators.router)
    return app
