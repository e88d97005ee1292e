"""The VM image API: users (each on one computer), publishing image versions, and every
image's "Users" tab (Assign, Staged, Name, Full Name, Running Version, Assigned Version and
the reason Running differs), plus the custom and local VMs whose PV drivers need upgrading by
hand (guide, step 5).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from disk_images.state import VmKind
from sync_server import vm_images
from sync_server.api_common import Admin, ApiError, db_session
from sync_server.models_ops import VmUser
from sync_server.vm_images import VmRefused

router = APIRouter()


class UserRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    full_name: str = Field(default="", max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")
    computer_id: int


class UserDoc(BaseModel):
    id: int
    name: str
    full_name: str
    computer_id: int


class PublishRequest(BaseModel):
    kind: VmKind | None = None  # a new image: default shared; an existing one keeps its kind
    users: list[str] = Field(default_factory=list)
    staged: bool = False


class PublishDoc(BaseModel):
    image: str
    kind: str
    version: int
    published_by: str  # the Synchronizer version
    pv_drivers: str
    staged: bool
    users: list[str]


class ManualPvDoc(BaseModel):
    computer_id: int
    computer: str
    vm: str
    kind: str
    pv_drivers: str
    engine: str


class VmsDoc(BaseModel):
    synchronizer_version: str
    users: list[vm_images.UserRow]  # the domain's row as it is: one definition
    manual_pv_upgrades: list[ManualPvDoc]


def _user_doc(user: VmUser) -> UserDoc:
    return UserDoc(
        id=user.id, name=user.name, full_name=user.full_name, computer_id=user.computer_id
    )


@router.post("/api/v1/users", response_model=UserDoc, status_code=201)
def add_user(body: UserRequest, caller: Admin, request: Request) -> UserDoc:
    try:
        with db_session(request) as session, session.begin():
            return _user_doc(
                vm_images.add_user(session, body.name, body.full_name, body.computer_id)
            )
    except VmRefused as exc:
        raise ApiError(exc.status, exc.error, exc.hint) from None


@router.get("/api/v1/users", response_model=list[UserDoc])
def list_users(caller: Admin, request: Request) -> list[UserDoc]:
    with db_session(request) as session:
        return [_user_doc(u) for u in session.scalars(select(VmUser).order_by(VmUser.name))]


@router.post("/api/v1/vms/{name}/publish", response_model=PublishDoc, status_code=201)
def publish(name: str, body: PublishRequest, caller: Admin, request: Request) -> PublishDoc:
    """A new version of VM image `name`, stamped with this server's Synchronizer version."""
    try:
        with db_session(request) as session, session.begin():
            done = vm_images.publish(session, name, body.kind, body.users, staged=body.staged)
            return PublishDoc(
                image=done.image.name,
                kind=done.image.kind,
                version=done.version.version,
                published_by=done.version.published_by,
                pv_drivers=done.version.pv_drivers,
                staged=done.version.staged,
                users=list(done.users),
            )
    except VmRefused as exc:
        raise ApiError(exc.status, exc.error, exc.hint) from None


@router.get("/api/v1/vms", response_model=VmsDoc)
def list_vms(caller: Admin, request: Request, user: str | None = None) -> VmsDoc:
    with db_session(request) as session:
        return VmsDoc(
            synchronizer_version=vm_images.synchronizer_version(session),
            users=vm_images.users_tab(session, user),
            manual_pv_upgrades=[
                ManualPvDoc(**vars(m)) for m in vm_images.manual_pv_upgrades(session)
            ],
        )
