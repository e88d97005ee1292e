"""Staged rollouts: the rollouts and rollout_targets tables.

Revision ID: 0002_rollouts
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_rollouts"
down_revision = "0001"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kit_id", sa.Integer, sa.ForeignKey("kits.id"), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("stage", sa.Integer, nullable=False),
        sa.Column("stages", sa.JSON, nullable=False),
        sa.Column("success_threshold", sa.Float, nullable=False),
        sa.Column("error_threshold", sa.Float, nullable=False),
        sa.Column("acknowledged", sa.JSON, nullable=False),
        sa.Column("override", sa.Boolean, nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
    )
    op.create_table(
        "rollout_targets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("rollout_id", sa.Integer, sa.ForeignKey("rollouts.id"), nullable=False),
        sa.Column("computer_id", sa.Integer, sa.ForeignKey("computers.id"), nullable=False),
        sa.Column("stage", sa.Integer),
        sa.Column("note", sa.String(500), nullable=False),
        sa.Column("skipped", sa.Boolean, nullable=False),
        sa.Column("assignment_id", sa.Integer, sa.ForeignKey("assignments.id")),
        sa.UniqueConstraint("rollout_id", "computer_id"),
    )
    op.create_index("ix_rollout_targets_rollout_id", "rollout_targets", ["rollout_id"])
    op.create_index("ix_rollout_targets_computer_id", "rollout_targets", ["computer_id"])


def downgrade() -> None:
    op.drop_index("ix_rollout_targets_computer_id", "rollout_targets")
    op.drop_index("ix_rollout_targets_rollout_id", "rollout_targets")
    op.drop_table("rollout_targets")
    op.drop_table("rollouts")
