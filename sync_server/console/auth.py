"""Who is using the console: sign-in with the admin token or as a named operator (name and
password, `sync_server.operators`), a signed session cookie that
expires (Starlette's SessionMiddleware, signed with itsdangerous; the sign-in time is in the
session and checked against `SESSION_LIFETIME`, so a page that keeps polling does not keep a
session alive forever), and a CSRF token per session that every form carries. An operator's
session carries their session key: removing the operator ends it at the next request."""

from __future__ import annotations

import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.datastructures import FormData

from sync_server import operators
from sync_server.api_common import Principal, db_session
from sync_server.console.rendering import page
from sync_server.models import Token
from sync_server.tokens import TokenRole, digest_matches, token_digest

SECRET_FILE = "console-secret"
SESSION_LIFETIME = 8 * 3600  # seconds from sign-in
SESSION_COOKIE = "engine_console"


class ConsoleRefusal(Exception):
    """A request the console refuses: shown as a page with what was wrong and what to do."""

    def __init__(self, status: int, title: str, message: str, hint: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message, self.hint = status, title, message, hint


def no_such(thing: str, named: str, listed_in: str, *, done: str = "changed") -> ConsoleRefusal:
    """The 404 page for an id or a name that names nothing: "No such kit", what was not done,
    and where the things that exist are listed."""
    return ConsoleRefusal(
        404,
        f"No such {thing}",
        f"There is no {thing} {named}: nothing was {done}.",
        f"Open {listed_in} and choose one of the {thing}s listed there.",
    )


class SignInRequired(Exception):
    def __init__(self, expired: bool) -> None:
        super().__init__("sign in")
        self.expired = expired


def ensure_console_secret(data_dir: Path) -> str:
    """DIR/console-secret (mode 0600), made at first start: the key that signs sessions."""
    path = data_dir / SECRET_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(48) + "\n")
    return path.read_text(encoding="ascii").strip()


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def checked_form(request: Request) -> FormData:
    """The posted form, once its CSRF token matches the session's; a refusal page otherwise."""
    form = await request.form()
    sent = form.get("csrf")
    expected = request.session.get("csrf")
    if not (isinstance(sent, str) and isinstance(expected, str)) or not hmac.compare_digest(
        sent, expected
    ):
        raise ConsoleRefusal(
            403,
            "Form refused",
            "The form's security token does not match this session: nothing was changed.",
            "Go back, reload the page and submit the form again.",
        )
    return form


# A named operator's Principal has no token: its token_id is this.
NO_TOKEN = 0


def operator(request: Request) -> Principal:
    """The signed-in operator, or SignInRequired (the pages answer with the sign-in page)."""
    session = request.session
    token_id, since = session.get("token_id"), session.get("signed_in_at")
    operator_id, key = session.get("operator_id"), session.get("operator_key")
    named = isinstance(operator_id, int) and isinstance(key, str)
    if not (isinstance(token_id, int) or named) or not isinstance(since, int | float):
        raise SignInRequired(expired=False)
    if time.time() - since > SESSION_LIFETIME:
        session.clear()
        raise SignInRequired(expired=True)
    with db_session(request) as db:
        if isinstance(operator_id, int) and isinstance(key, str):
            found = operators.session_valid(db, operator_id, key)
            if found is None:
                session.clear()
                raise SignInRequired(expired=True)
            return Principal(NO_TOKEN, TokenRole.ADMIN, None, found.name)
        row = db.get(Token, token_id)
        if row is None or row.role != TokenRole.ADMIN or row.revoked_at is not None:
            session.clear()
            raise SignInRequired(expired=True)
        return Principal(row.id, TokenRole.ADMIN, None, row.name)


Operator = Annotated[Principal, Depends(operator)]

router = APIRouter()


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, expired: int = 0) -> Response:
    csrf_token(request)
    return page(request, "login.html", {"expired": bool(expired), "problem": ""})


def _token_sign_in(request: Request, token: str) -> dict[str, object] | str:
    """The session for the admin token, or why it is refused."""
    with db_session(request) as db:
        row = db.scalars(select(Token).where(Token.digest == token_digest(token))).first()
        if row is None or not digest_matches(token, row.digest) or row.revoked_at is not None:
            return "The token is not valid (unknown or revoked)."
        if row.role != TokenRole.ADMIN:
            return "That is a computer's token: the console needs the admin token."
        return {"token_id": row.id}


def _operator_sign_in(request: Request, name: str, password: str) -> dict[str, object] | str:
    with db_session(request) as db:
        found = operators.signed_in(db, name, password)
        if found is None:
            return "The operator name or password is not right."
        return {"operator_id": found.id, "operator_key": found.session_key, "who": found.name}


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    form = await checked_form(request)
    token = str(form.get("token", "")).strip()
    name = str(form.get("name", "")).strip()
    password = str(form.get("password", ""))
    if token:
        outcome = _token_sign_in(request, token)
    elif name and password:
        outcome = _operator_sign_in(request, name, password)
    else:
        outcome = "Give the admin token, or an operator's name and password."
    if isinstance(outcome, str):
        csrf_token(request)
        return page(request, "login.html", {"expired": False, "problem": outcome}, 401)
    request.session.clear()
    request.session.update({**outcome, "signed_in_at": int(time.time())})
    csrf_token(request)
    return RedirectResponse(request.url_for("library"), status_code=303)


@router.post("/logout")
async def logout(request: Request) -> Response:
    await checked_form(request)
    request.session.clear()
    return RedirectResponse(request.url_for("login_page"), status_code=303)
