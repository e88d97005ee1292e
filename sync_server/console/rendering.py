"""The console's templates (Jinja2, autoescaped: names from computers are text, never markup)
and the small view helpers they share."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from disk_images.state import UpgradeStatus

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


def iso_time(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else ""


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def upgrade_label(status: str | None) -> str:
    """The Upgrade column's words, exactly as the guide names them."""
    return UpgradeStatus(status or "").label


TEMPLATES.env.filters["iso_time"] = iso_time
TEMPLATES.env.filters["human_size"] = human_size
TEMPLATES.env.filters["upgrade_label"] = upgrade_label


def page(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    session = request.scope.get("session") or {}
    signed_in = "token_id" in session or "operator_id" in session
    who = session.get("who", "admin token") if signed_in else ""
    full = {"csrf": session.get("csrf", ""), "signed_in": signed_in, "who": who, **context}
    return TEMPLATES.TemplateResponse(request, template, full, status_code=status_code)
