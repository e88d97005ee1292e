"""The API of a remote (branch-office) server, as its computers see it: their check-ins and
status reports are forwarded to the main server (with this site's token beside the
computer's own), which keeps the one database; kit downloads are served from this site's
cache (HTTP Range), once the main server says the computer may have that kit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from sync_server.client import SITE_HEADER
from sync_server.relay import RemoteCache

FORWARDED = ("/api/v1/checkin", "/api/v1/assignments/{assignment_id}/status")


@dataclass(frozen=True)
class RemoteState:
    upstream: str  # the main server's URL
    site_token: str
    cache: RemoteCache


def _unreachable(state: RemoteState, exc: httpx.HTTPError) -> JSONResponse:
    body = {
        "error": f"this remote server cannot reach its main server {state.upstream} "
        f"({type(exc).__name__})",
        "hint": "check the link to the main server; the computer retries at its next check-in",
        "details": [],
    }
    return JSONResponse(body, status_code=503)


def build_remote_app(state: RemoteState) -> FastAPI:
    links: list[httpx.AsyncClient] = []

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(base_url=state.upstream, timeout=30.0) as http:
            links.append(http)
            yield

    app = FastAPI(title="Synchronizer (remote server)", version="1", lifespan=lifespan)

    async def forward(request: Request) -> Response:
        headers = {
            "Authorization": request.headers.get("authorization", ""),
            "Content-Type": request.headers.get("content-type", "application/json"),
            SITE_HEADER: state.site_token,
        }
        body = await request.body()
        try:
            answer = await links[0].post(request.url.path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return _unreachable(state, exc)
        return Response(
            answer.content,
            status_code=answer.status_code,
            media_type=answer.headers.get("content-type"),
        )

    for path in FORWARDED:
        app.add_api_route(path, forward, methods=["POST"])

    @app.get("/api/v1/kits/{kit_id}/file", response_model=None)
    async def kit_file(kit_id: int, request: Request) -> Response:
        try:
            grant = await links[0].get(
                f"/api/v1/kits/{kit_id}/grant",
                headers={"Authorization": request.headers.get("authorization", "")},
            )
        except httpx.HTTPError as exc:
            return _unreachable(state, exc)
        if grant.status_code != 204:
            return Response(
                grant.content,
                status_code=grant.status_code,
                media_type=grant.headers.get("content-type"),
            )
        path = state.cache.kit_file(kit_id)
        if path is None:
            body = {
                "error": f"kit {kit_id} is not at this remote server yet",
                "hint": "its relay task on the main server brings it; engine-sync tasks",
                "details": [],
            }
            return JSONResponse(body, status_code=404)
        return FileResponse(path, media_type="application/octet-stream")

    return app
