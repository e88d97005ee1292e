"""The first schema: tokens, computers, kits, assignments, tasks.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "computers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("disk_id", sa.String(100)),
        sa.Column("running_version", sa.String(20), nullable=False),
        sa.Column("active_slot", sa.String(1)),
        sa.Column("slots", sa.JSON, nullable=False),
        sa.Column("engine_status", sa.String(40), nullable=False),
        sa.Column("vms", sa.JSON, nullable=False),
        sa.Column("first_contact", _WHEN, nullable=False),
        sa.Column("last_contact", _WHEN, nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("computer_id", sa.Integer, sa.ForeignKey("computers.id")),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("revoked_at", _WHEN),
    )
    op.create_index("ix_tokens_digest", "tokens", ["digest"], unique=True)
    op.create_table(
        "kits",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("version", sa.String(20), nullable=False, unique=True),
        sa.Column("upgrade_from", sa.JSON, nullable=False),
        sa.Column("layout", sa.String(20), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("file_name", sa.String(200), nullable=False),
        sa.Column("imported_at", _WHEN, nullable=False),
    )
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kit_id", sa.Integer, sa.ForeignKey("kits.id"), nullable=False),
        sa.Column("computer_id", sa.Integer, sa.ForeignKey("computers.id"), nullable=False),
        sa.Column("status", sa.String(40), nullable=False),
        sa.Column("detail", sa.String(500), nullable=False),
        sa.Column("rollout_id", sa.Integer),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.UniqueConstraint("kit_id", "computer_id"),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("error", sa.String(1000)),
        sa.Column("kit_id", sa.Integer, sa.ForeignKey("kits.id")),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("started_at", _WHEN),
        sa.Column("finished_at", _WHEN),
    )


def downgrade() -> None:
    for table in ("tasks", "assignments", "kits", "tokens", "computers"):
        op.drop_table(table)
