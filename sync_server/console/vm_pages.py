"""Virtual Machines: the images, an image's "Users" tab (Assign, Staged, Name, Full Name,
Running Version, Assigned Version, and why Running differs, from `vm_images.users_tab`) and
its "Publish new version" form, staged to a few users first or to everyone assigned, through
`vm_images.publish`, the function `engine-sync publish` reaches over the API."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select

from sync_server import vm_images
from sync_server.api_common import db_session
from sync_server.console.auth import checked_form, no_such, operator
from sync_server.console.rendering import page
from sync_server.models_ops import VmImage, VmVersion
from sync_server.vm_images import UserRow, VmRefused

# Every page here needs a signed-in operator.
router = APIRouter(dependencies=[Depends(operator)])


def image_context(request: Request, name: str) -> dict[str, object]:
    with db_session(request) as session:
        image = session.scalars(select(VmImage).where(VmImage.name == name)).first()
        if image is None:
            raise no_such("VM image", repr(name), "Virtual Machines")
        latest = session.scalar(
            select(func.max(VmVersion.version)).where(VmVersion.image_id == image.id)
        )
        rows: list[UserRow] = [r for r in vm_images.users_tab(session) if r.image == name]
        return {
            "image": name,
            "kind": image.kind,
            "latest": latest or 0,
            "synchronizer": vm_images.synchronizer_version(session),
            "rows": rows,
        }


@router.get("/vms", response_class=HTMLResponse)
def vm_list(request: Request) -> Response:
    with db_session(request) as session:
        images = [
            (image.name, image.kind, latest or 0)
            for image, latest in session.execute(
                select(VmImage, func.max(VmVersion.version))
                .outerjoin(VmVersion, VmVersion.image_id == VmImage.id)
                .group_by(VmImage.id)
                .order_by(VmImage.name)
            ).all()
        ]
    return page(request, "vms.html", {"images": images})


@router.get("/vms/{name}/users", response_class=HTMLResponse)
def vm_users(name: str, request: Request) -> Response:
    context = {**image_context(request, name), "summary": "", "refused": False}
    return page(request, "vm_users.html", context)


@router.get("/vms/{name}/users/rows", response_class=HTMLResponse)
def vm_users_rows(name: str, request: Request) -> Response:
    return page(request, "vm_users_rows.html", image_context(request, name))


@router.post("/vms/{name}/publish", response_class=HTMLResponse)
async def vm_publish(name: str, request: Request) -> Response:
    form = await checked_form(request)
    image_context(request, name)  # the image exists
    users = [u for u in form.getlist("user") if isinstance(u, str)]
    staged = form.get("staged") == "yes"
    summary, refused, status = "", False, 200
    try:
        with db_session(request) as session, session.begin():
            done = vm_images.publish(session, name, None, users, staged=staged)
            who = ", ".join(done.users) or "nobody yet"
            summary = (
                f"Version {done.version.version} of {name} published"
                f"{' (staged)' if staged else ''}; assigned to {who}."
            )
    except VmRefused as exc:
        summary, refused, status = f"{exc.error}: nothing was published.", True, exc.status
    context = {**image_context(request, name), "summary": summary, "refused": refused}
    return page(request, "vm_users.html", context, status)
