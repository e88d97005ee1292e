"""The server's own upgrade (upgrade guide 6.1-6.4) and the order rule before it.

Synchronizer is upgraded last: while any registered computer runs an Engine older than the
version the server is upgraded to, the upgrade is refused and those computers are named
(unless forced: VMs it then publishes will not reach them). It is refused while a remote
server still runs (6.4: stop every remote first, upgrade the main server, then the remotes),
each named, unless forced. It is refused while tasks are
active (queued or running), each listed; a cancelled Daily Roll-Up Backup is flagged for
rescheduling. A backup (database and kits) is taken before the new version is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from enginekit.versions import EngineVersion
from sync_server.api_common import task_note
from sync_server.models import Computer, Kit, Task, TaskState
from sync_server.sites import running_sites
from sync_server.vm_images import older, synchronizer_version


@dataclass(frozen=True)
class UpgradeRefused(Exception):
    error: str
    hint: str
    details: tuple[str, ...]


def target_version(session: Session, requested: str | None) -> str:
    """`requested`, or the newest Engine kit in the Software Library."""
    if requested is not None:
        return str(EngineVersion.parse(requested))
    versions = [EngineVersion.parse(v) for v in session.scalars(select(Kit.version))]
    if not versions:
        raise UpgradeRefused(
            "no Engine kit in the Software Library tells which version to upgrade to",
            "give --to VERSION (the Synchronizer release you are installing)",
            (),
        )
    return str(max(versions))


def older_computers(session: Session, target: str) -> list[str]:
    return [
        f"computer {c.id} ({c.name}) runs Engine {c.running_version}"
        for c in session.scalars(select(Computer).order_by(Computer.id))
        if older(c.running_version, target)
    ]


def active_tasks(session: Session) -> list[str]:
    active = session.scalars(
        select(Task)
        .where(Task.state.in_([TaskState.QUEUED.value, TaskState.RUNNING.value]))
        .order_by(Task.id)
    )
    return [f"task {t.id}: {t.kind} {t.source} {t.state}".rstrip() for t in active]


def reschedule_notes(session: Session) -> list[str]:
    return [
        f"task {t.id}: {t.kind} {note}"
        for t in session.scalars(select(Task).order_by(Task.id))
        if (note := task_note(t))
    ]


def check_upgrade(session: Session, target: str, *, force: bool) -> str:
    """The version the server runs now, or UpgradeRefused naming what stands in the way."""
    current = synchronizer_version(session)
    if not older(current, target):
        raise UpgradeRefused(
            f"this server already runs Synchronizer {current}; nothing to upgrade to {target}",
            "give --to a newer version",
            (),
        )
    remotes = running_sites(session)
    if remotes and not force:
        raise UpgradeRefused(
            "stop every remote server before the main server is upgraded; still running: "
            + "; ".join(remotes),
            "stop engine-sync serve --upstream on each (its service only), upgrade this "
            "server, then start the remotes again; or --force",
            (),
        )
    behind = older_computers(session, target)
    if behind and not force:
        raise UpgradeRefused(
            f"upgrade every Engine before Synchronizer {target}; still older: " + "; ".join(behind),
            "roll the Engine kit out to them first, or --force (VMs published afterwards "
            "will not reach them)",
            (),
        )
    tasks = active_tasks(session)
    if tasks:
        raise UpgradeRefused(
            "tasks are active; cancel them or let them finish first: " + "; ".join(tasks),
            "engine-sync task cancel ID; a cancelled Daily Roll-Up Backup must be "
            "rescheduled afterwards",
            (),
        )
    return current


@dataclass(frozen=True)
class UpgradeDone:
    previous: str
    version: str
    backup: Path
    forced_past: tuple[str, ...]
    reschedule: tuple[str, ...]
