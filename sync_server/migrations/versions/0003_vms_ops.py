"""VM images (versions, users, per-user assignments) and the server's own settings.

Revision ID: 0003_vms_ops
Revises: 0002_rollouts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_vms_ops"
down_revision = "0002_rollouts"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "server_settings",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.String(500), nullable=False),
    )
    op.create_table(
        "vm_images",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
    )
    op.create_table(
        "vm_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("image_id", sa.Integer, sa.ForeignKey("vm_images.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("published_by", sa.String(20), nullable=False),
        sa.Column("pv_drivers", sa.String(20), nullable=False),
        sa.Column("staged", sa.Boolean, nullable=False),
        sa.Column("published_at", _WHEN, nullable=False),
        sa.UniqueConstraint("image_id", "version"),
    )
    op.create_table(
        "vm_users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("full_name", sa.String(200), nullable=False),
        sa.Column("computer_id", sa.Integer, sa.ForeignKey("computers.id"), nullable=False),
    )
    op.create_table(
        "vm_assignments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("image_id", sa.Integer, sa.ForeignKey("vm_images.id"), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("vm_users.id"), nullable=False),
        sa.Column("assigned_version", sa.Integer, nullable=False),
        sa.Column("staged", sa.Boolean, nullable=False),
        sa.Column("error", sa.String(500), nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.UniqueConstraint("image_id", "user_id"),
    )


def downgrade() -> None:
    for table in ("vm_assignments", "vm_users", "vm_versions", "vm_images", "server_settings"):
        op.drop_table(table)
