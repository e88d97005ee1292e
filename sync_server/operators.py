"""Named console operators: each signs in with a name and a password instead of the admin
token. Passwords are hashed with Argon2id (argon2-cffi, a salt per password) and never stored
or logged in clear; a sign-in with an unknown name still pays for one hash, so the answer's
time does not tell which names exist."""

from __future__ import annotations

import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from sync_server.models_ops import Operator

MIN_PASSWORD = 8
MAX_PASSWORD = 1024

_HASHER = PasswordHasher()


@functools.cache
def _unknown_hash() -> str:
    """Checked against when the name is unknown (the same cost as a real check). Made at the
    first sign-in, not at import: hashing costs a fifth of a second, and every server start
    and every client command would pay it."""
    return _HASHER.hash(secrets.token_hex(16))


class OperatorRefused(Exception):
    """An add or remove the server refuses (HTTP 404 or 409)."""

    def __init__(self, status: int, error: str, hint: str) -> None:
        super().__init__(error)
        self.status, self.error, self.hint = status, error, hint


def add_operator(session: Session, name: str, password: str) -> Operator:
    if session.scalars(select(Operator).where(Operator.name == name)).first() is not None:
        raise OperatorRefused(
            409, f"operator {name!r} already exists", "engine-sync operator list lists them"
        )
    row = Operator(
        name=name, password_hash=_HASHER.hash(password), session_key=secrets.token_hex(16)
    )
    session.add(row)
    session.flush()
    return row


def remove_operator(session: Session, name: str) -> Operator:
    """Delete the operator; their open console sessions end at their next request."""
    row = session.scalars(select(Operator).where(Operator.name == name)).first()
    if row is None:
        raise OperatorRefused(404, f"no operator {name!r}", "engine-sync operator list lists them")
    session.delete(row)
    session.flush()
    return row


def list_operators(session: Session) -> list[Operator]:
    return list(session.scalars(select(Operator).order_by(Operator.name)))


def signed_in(session: Session, name: str, password: str) -> Operator | None:
    """The operator when `password` is theirs, else None."""
    row = session.scalars(select(Operator).where(Operator.name == name)).first()
    try:
        _HASHER.verify(row.password_hash if row is not None else _unknown_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    return row


def session_valid(session: Session, operator_id: int, key: str) -> Operator | None:
    """The operator a console session names, if they still exist with that session key."""
    row = session.get(Operator, operator_id)
    if row is None or not secrets.compare_digest(row.session_key, key):
        return None
    return row
