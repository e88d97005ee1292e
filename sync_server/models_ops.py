"""Tables for VM images and for the server's own upkeep, kept beside `sync_server.models`
(same `Base`, created by migration 0002).

`server_settings` holds named values (the Synchronizer version this server runs). A VM image
(`vm_images`) has numbered versions (`vm_versions`), each stamped with the Synchronizer
version that published it; `vm_users` are the people VMs are assigned to, each on one computer;
`vm_assignments` is the image's "Users" tab: per user the assigned version and the Staged box.
`operators` are the console's named operators (password hashes only).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sync_server.models import Base, utc_now


class ServerSetting(Base):
    __tablename__ = "server_settings"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(String(500))


class VmImage(Base):
    __tablename__ = "vm_images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # disk_images.state.VmKind value
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class VmVersion(Base):
    __tablename__ = "vm_versions"
    __table_args__ = (UniqueConstraint("image_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("vm_images.id"))
    version: Mapped[int] = mapped_column(Integer)
    published_by: Mapped[str] = mapped_column(String(20))  # the Synchronizer version
    pv_drivers: Mapped[str] = mapped_column(String(20))
    staged: Mapped[bool] = mapped_column(Boolean, default=False)
    published_at: Mapped[datetime] = mapped_column(default=utc_now)


class VmUser(Base):
    __tablename__ = "vm_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    computer_id: Mapped[int] = mapped_column(ForeignKey("computers.id"))


class VmAssignment(Base):
    __tablename__ = "vm_assignments"
    __table_args__ = (UniqueConstraint("image_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("vm_images.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("vm_users.id"))
    assigned_version: Mapped[int] = mapped_column(Integer)
    staged: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str] = mapped_column(String(500), default="")  # the computer's last failure
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)


class Operator(Base):
    """A named console operator (migration 0005). The password is kept only as its Argon2id
    hash; `session_key` is in every console session the operator opens, so removing the
    operator (or re-adding the name) ends those sessions."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    session_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
