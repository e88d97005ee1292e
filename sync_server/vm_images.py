"""VM images on the server: publishing numbered versions, assigning them to users, what each
computer is offered at check-in, and the image's "Users" tab with the reason a user's running
version differs from the assigned one.

The order rule for VMs (upgrade guide): a version published by a Synchronizer newer than a
computer's Engine is not deployed to that computer; it stays assigned, with that reason. A
version carries the PV drivers of the Synchronizer that published it, so republishing after
the server's upgrade gives shared VMs the new drivers. Custom and local VMs need their PV
drivers upgraded by hand (guide, step 5); `manual_pv_upgrades` lists them from the computers'
own reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from disk_images.layout import VM_NAME
from disk_images.state import VmKind
from enginekit.versions import EngineVersion
from sync_server.models import Computer, utc_now
from sync_server.models_ops import ServerSetting, VmAssignment, VmImage, VmUser, VmVersion

SYNCHRONIZER_VERSION = "synchronizer_version"
# A new server runs the release the reference fleet starts from; upgrade-server moves it.
INITIAL_SYNCHRONIZER_VERSION = "4.5.0"


class VmRefused(Exception):
    """A publish or user request the server refuses (HTTP 404 or 409)."""

    def __init__(self, status: int, error: str, hint: str) -> None:
        super().__init__(error)
        self.status, self.error, self.hint = status, error, hint


def synchronizer_version(session: Session) -> str:
    row = session.get(ServerSetting, SYNCHRONIZER_VERSION)
    return row.value if row is not None else INITIAL_SYNCHRONIZER_VERSION


def set_synchronizer_version(session: Session, version: str) -> None:
    row = session.get(ServerSetting, SYNCHRONIZER_VERSION)
    if row is None:
        session.add(ServerSetting(name=SYNCHRONIZER_VERSION, value=version))
    else:
        row.value = version


def release(version: str) -> str:
    """ "5.0.0" as the guide says it: "5.0"."""
    parsed = EngineVersion.parse(version)
    return f"{parsed.major}.{parsed.minor}"


def older(a: str, b: str) -> bool:
    return EngineVersion.parse(a) < EngineVersion.parse(b)


def add_user(session: Session, name: str, full_name: str, computer_id: int) -> VmUser:
    if session.get(Computer, computer_id) is None:
        raise VmRefused(404, f"no computer {computer_id}", "engine-sync computers lists them")
    if session.scalars(select(VmUser).where(VmUser.name == name)).first() is not None:
        raise VmRefused(409, f"user {name!r} already exists", "engine-sync vms lists the users")
    user = VmUser(name=name, full_name=full_name, computer_id=computer_id)
    session.add(user)
    session.flush()
    return user


@dataclass(frozen=True)
class Published:
    image: VmImage
    version: VmVersion
    users: tuple[str, ...]  # who now has this version assigned


def publish(
    session: Session, name: str, kind: VmKind | None, users: list[str], *, staged: bool
) -> Published:
    """A new version of image `name`, assigned to `users` and, unless `staged`, to everyone
    the image is already assigned to (staged: the named users only, the Staged box ticked)."""
    if not VM_NAME.match(name):
        raise VmRefused(
            422,
            f"{name!r} is not a VM image name",
            "use letters, digits, '.', '_' and '-' (at most 64)",
        )
    image = session.scalars(select(VmImage).where(VmImage.name == name)).first()
    if image is None:
        image = VmImage(name=name, kind=(kind or VmKind.SHARED).value)
        session.add(image)
        session.flush()
    elif kind is not None and kind.value != image.kind:
        raise VmRefused(
            409,
            f"VM image {name!r} is a {image.kind} image, not {kind.value}",
            "leave out --kind, or publish under another name",
        )
    chosen: list[VmUser] = []
    for user_name in dict.fromkeys(users):
        user = session.scalars(select(VmUser).where(VmUser.name == user_name)).first()
        if user is None:
            raise VmRefused(
                404, f"no user {user_name!r}", "engine-sync user add NAME --computer ID adds one"
            )
        chosen.append(user)
    if staged and not chosen:
        raise VmRefused(409, "a staged publication needs --user", "name the users to test it")
    latest = session.scalar(
        select(func.max(VmVersion.version)).where(VmVersion.image_id == image.id)
    )
    server = synchronizer_version(session)
    version = VmVersion(
        image_id=image.id,
        version=(latest or 0) + 1,
        published_by=server,
        pv_drivers=server,
        staged=staged,
    )
    session.add(version)
    existing = {
        a.user_id: a
        for a in session.scalars(select(VmAssignment).where(VmAssignment.image_id == image.id))
    }
    targets = {u.id: u for u in chosen}
    if not staged:
        for user_id in existing:
            targets.setdefault(user_id, session.get(VmUser, user_id))  # type: ignore[arg-type]
    now = utc_now()
    for user_id in targets:
        row = existing.get(user_id)
        if row is None:
            row = VmAssignment(image_id=image.id, user_id=user_id, assigned_version=0)
            session.add(row)
        row.assigned_version, row.staged, row.error, row.updated_at = (
            version.version,
            staged,
            "",
            now,
        )
    session.flush()
    return Published(image, version, tuple(sorted(u.name for u in targets.values())))


def _reported(computer: Computer, name: str) -> dict[str, Any] | None:
    for vm in computer.vms.get("vms", []):
        if vm.get("name") == name:
            return dict(vm)
    return None


@dataclass(frozen=True)
class UserRow:
    """One line of the image's "Users" tab."""

    image: str
    kind: str
    assign: bool
    staged: bool
    name: str
    full_name: str
    computer_id: int
    running_version: int | None
    assigned_version: int | None
    reason: str  # why Running differs from Assigned ("" when they agree)


def _reason(
    assignment: VmAssignment, version: VmVersion, computer: Computer, vm: dict[str, Any] | None
) -> str:
    running = vm.get("image_version") if vm else None
    if running == assignment.assigned_version:
        return ""
    if older(computer.running_version, version.published_by):
        return (
            f"published by a {release(version.published_by)} server; "
            f"this Engine runs {release(computer.running_version)}"
        )
    if assignment.error:
        return f"failed: {assignment.error}"
    if computer.last_contact < assignment.updated_at:
        return "not checked in since the assignment"
    if vm is not None and vm.get("pending_version") == assignment.assigned_version:
        return "waiting for the VM to restart"
    return "downloading"


def users_tab(session: Session, user: str | None = None) -> list[UserRow]:
    """Every image's Users tab (every user, Assign ticked where assigned), or one user's."""
    query = select(VmUser).order_by(VmUser.name)
    if user is not None:
        query = query.where(VmUser.name == user)
    users = list(session.scalars(query))
    rows: list[UserRow] = []
    for image in session.scalars(select(VmImage).order_by(VmImage.name)):
        assignments = {
            a.user_id: a
            for a in session.scalars(select(VmAssignment).where(VmAssignment.image_id == image.id))
        }
        for person in users:
            computer = session.get(Computer, person.computer_id)
            assert computer is not None
            vm = _reported(computer, image.name)
            running = vm.get("image_version") if vm else None
            a = assignments.get(person.id)
            reason = ""
            if a is not None:
                version = session.scalars(
                    select(VmVersion).where(
                        VmVersion.image_id == image.id, VmVersion.version == a.assigned_version
                    )
                ).one()
                reason = _reason(a, version, computer, vm)
            rows.append(
                UserRow(
                    image=image.name,
                    kind=image.kind,
                    assign=a is not None,
                    staged=bool(a and a.staged),
                    name=person.name,
                    full_name=person.full_name,
                    computer_id=computer.id,
                    running_version=running,
                    assigned_version=a.assigned_version if a else None,
                    reason=reason,
                )
            )
    return rows


@dataclass(frozen=True)
class Offer:
    """A VM version for a computer to deploy."""

    name: str
    kind: str
    version: int
    published_for: str
    pv_drivers: str


def checked_in(session: Session, computer: Computer, failures: dict[str, str]) -> list[Offer]:
    """Record what the computer reported about its VMs; return what it should deploy: every
    version assigned to its users that its Engine can run."""
    offers: list[Offer] = []
    rows = session.execute(
        select(VmAssignment, VmImage, VmVersion)
        .join(VmUser, VmUser.id == VmAssignment.user_id)
        .join(VmImage, VmImage.id == VmAssignment.image_id)
        .join(
            VmVersion,
            (VmVersion.image_id == VmAssignment.image_id)
            & (VmVersion.version == VmAssignment.assigned_version),
        )
        .where(VmUser.computer_id == computer.id)
        .order_by(VmImage.name)
    ).all()
    for assignment, image, version in rows:
        vm = _reported(computer, image.name)
        if image.name in failures:
            assignment.error = failures[image.name][:500]
        elif vm is not None and assignment.assigned_version in (
            vm.get("image_version"),
            vm.get("pending_version"),
        ):
            assignment.error = ""
        if older(computer.running_version, version.published_by):
            continue  # the order rule: stays assigned, not deployed
        if vm is not None and vm.get("image_version") == version.version:
            continue
        offers.append(
            Offer(image.name, image.kind, version.version, version.published_by, version.pv_drivers)
        )
    return offers


@dataclass(frozen=True)
class ManualPvUpgrade:
    """A custom or local VM whose PV drivers are older than its computer's Engine (step 5)."""

    computer_id: int
    computer: str
    vm: str
    kind: str
    pv_drivers: str
    engine: str


def manual_pv_upgrades(session: Session) -> list[ManualPvUpgrade]:
    found = []
    for computer in session.scalars(select(Computer).order_by(Computer.id)):
        for vm in computer.vms.get("vms", []):
            kind = VmKind(vm["kind"])
            if kind.needs_manual_pv_upgrade and older(vm["pv_drivers"], computer.running_version):
                found.append(
                    ManualPvUpgrade(
                        computer.id,
                        computer.name,
                        vm["name"],
                        kind.value,
                        vm["pv_drivers"],
                        computer.running_version,
                    )
                )
    return found
