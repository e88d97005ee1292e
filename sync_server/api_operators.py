"""The operator API: named console operators (add, list, remove), admin token only. The
password goes in the request body, is hashed at once and is never returned or logged."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from sync_server import operators
from sync_server.api_common import Admin, ApiError, db_session
from sync_server.models_ops import Operator
from sync_server.operators import MAX_PASSWORD, MIN_PASSWORD, OperatorRefused

router = APIRouter()


class OperatorRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    password: str = Field(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD, repr=False)


class OperatorDoc(BaseModel):
    id: int
    name: str
    created_at: datetime


def _doc(row: Operator) -> OperatorDoc:
    return OperatorDoc(id=row.id, name=row.name, created_at=row.created_at)


@router.post("/api/v1/operators", response_model=OperatorDoc, status_code=201)
def add_operator(body: OperatorRequest, caller: Admin, request: Request) -> OperatorDoc:
    try:
        with db_session(request) as session, session.begin():
            return _doc(operators.add_operator(session, body.name, body.password))
    except OperatorRefused as exc:
        raise ApiError(exc.status, exc.error, exc.hint) from None


@router.get("/api/v1/operators", response_model=list[OperatorDoc])
def list_operators(caller: Admin, request: Request) -> list[OperatorDoc]:
    with db_session(request) as session:
        return [_doc(row) for row in operators.list_operators(session)]


@router.post("/api/v1/operators/{name}/remove", response_model=OperatorDoc)
def remove_operator(name: str, caller: Admin, request: Request) -> OperatorDoc:
    """Remove the operator; their open console sessions end."""
    try:
        with db_session(request) as session, session.begin():
            return _doc(operators.remove_operator(session, name))
    except OperatorRefused as exc:
        raise ApiError(exc.status, exc.error, exc.hint) from None
