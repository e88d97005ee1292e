"""The server's database schema as SQLAlchemy 2 typed mappings; Alembic migrations in
`sync_server/migrations` create and evolve the same tables.

Kits are the Software Library, computers are the Engines that checked in, assignments are the
Upgrade column per (kit, computer), tasks are the background jobs (imports, relays of kits to
remote servers, backups), tokens are the bearer credentials (digests only), sites are the
remote (branch-office) servers.
Rollouts and their targets are the staged deployments (their own section at the end).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utc_now() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timestamps in UTC on every database: SQLite hands them back without a zone."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime(), dict[str, Any]: JSON}


class TaskState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)


class TaskKind(enum.StrEnum):
    IMPORT_KIT = "import-kit"
    DAILY_ROLLUP_BACKUP = "Daily Roll-Up Backup"
    RELAY_KIT = "Relay kit"  # main -> remote server; the remote runs it and reports progress


class Token(Base):
    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))  # TokenRole value
    digest: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    computer_id: Mapped[int | None] = mapped_column(ForeignKey("computers.id"), default=None)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), default=None)  # role site
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Computer(Base):
    __tablename__ = "computers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    disk_id: Mapped[str | None] = mapped_column(String(100), default=None)
    running_version: Mapped[str] = mapped_column(String(20))
    active_slot: Mapped[str | None] = mapped_column(String(1), default=None)
    slots: Mapped[dict[str, Any]] = mapped_column(default=dict)
    engine_status: Mapped[str] = mapped_column(String(40), default="")  # as the disk says
    vms: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"vms": [...]}
    first_contact: Mapped[datetime] = mapped_column(default=utc_now)
    last_contact: Mapped[datetime] = mapped_column(default=utc_now)
    # The remote server it last checked in through; None: this (the main) server.
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), default=None)
    # The enrolment token it first checked in with (tokens.id; no foreign key, tokens refer
    # to computers already): unique, so simultaneous first check-ins make one computer.
    token_id: Mapped[int | None] = mapped_column(Integer, default=None, unique=True, index=True)


class Kit(Base):
    __tablename__ = "kits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), default="Engine Update")
    version: Mapped[str] = mapped_column(String(20), unique=True)
    upgrade_from: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"versions": [...]}
    layout: Mapped[str] = mapped_column(String(20))
    # ISOs may exceed 2 GiB: 64 bits (SQLite's INTEGER is 64 bits already)
    size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    sha256: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str] = mapped_column(String(200))
    imported_at: Mapped[datetime] = mapped_column(default=utc_now)

    @property
    def upgrade_from_versions(self) -> list[str]:
        return [str(v) for v in self.upgrade_from.get("versions", [])]


class Assignment(Base):
    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("kit_id", "computer_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kit_id: Mapped[int] = mapped_column(ForeignKey("kits.id"))
    computer_id: Mapped[int] = mapped_column(ForeignKey("computers.id"))
    status: Mapped[str] = mapped_column(String(40))  # disk_images.state.UpgradeStatus value
    detail: Mapped[str] = mapped_column(String(500), default="")
    rollout_id: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))  # TaskKind value
    state: Mapped[str] = mapped_column(String(20), default=TaskState.QUEUED.value)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    source: Mapped[str] = mapped_column(String(500), default="")
    error: Mapped[str | None] = mapped_column(String(1000), default=None)
    kit_id: Mapped[int | None] = mapped_column(ForeignKey("kits.id"), default=None)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), default=None)  # a relay's
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


# --- remote (branch-office) servers (migration 0005_sites) -------------------------------
# A site is one remote server: a token of role "site" names it (tokens.site_id); the row
# keeps what the remote last said about itself (Synchronizer version, running or stopped, its
# contact interval) and the kits complete in its cache. Computers record the site they check
# in through; relay tasks name their site.


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    version: Mapped[str | None] = mapped_column(String(20), default=None)
    running: Mapped[bool] = mapped_column(Boolean, default=False)
    contact_interval: Mapped[float] = mapped_column(Float, default=10.0)
    kits: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"kits": [kit ids]}
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    last_contact: Mapped[datetime | None] = mapped_column(default=None)

    @property
    def kit_ids(self) -> list[int]:
        return [int(k) for k in self.kits.get("kits", [])]


# --- staged rollouts (migration 0002_rollouts) -------------------------------------------
# `rollouts` holds each rollout's position in its state machine (sync_server.rollout_state):
# state, current stage, the reason it paused, the failures per stage an operator resumed past.
# `rollout_targets` lists the computers it considered: a stage (0 is the test group), or none
# with the reason it was skipped; `assignment_id` links the Upgrade-column row made when the
# target's stage started (that row's `rollout_id` names the rollout while it offers the kit).


class Rollout(Base):
    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kit_id: Mapped[int] = mapped_column(ForeignKey("kits.id"))
    state: Mapped[str] = mapped_column(String(20))  # RolloutState value
    reason: Mapped[str] = mapped_column(String(500), default="")
    stage: Mapped[int] = mapped_column(Integer, default=0)  # the current stage
    stages: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"specs": [...], "sizes": [...]}
    success_threshold: Mapped[float] = mapped_column(Float)
    error_threshold: Mapped[float] = mapped_column(Float)
    acknowledged: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"failures": [...]}
    override: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)


class RolloutTarget(Base):
    __tablename__ = "rollout_targets"
    __table_args__ = (UniqueConstraint("rollout_id", "computer_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id"), index=True)
    computer_id: Mapped[int] = mapped_column(ForeignKey("computers.id"), index=True)
    stage: Mapped[int | None] = mapped_column(Integer, default=None)  # None: skipped at create
    note: Mapped[str] = mapped_column(String(500), default="")  # why skipped / not offered
    skipped: Mapped[bool] = mapped_column(Boolean, default=False)
    assignment_id: Mapped[int | None] = mapped_column(ForeignKey("assignments.id"), default=None)


# The VM image and server-upkeep tables share this metadata (one schema, one Alembic head).
from sync_server import models_ops as models_ops  # noqa: E402
