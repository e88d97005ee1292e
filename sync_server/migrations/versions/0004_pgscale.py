"""Kit sizes as 64-bit integers: an Engine ISO may be larger than 2 GiB, which PostgreSQL's
INTEGER (32 bits) cannot hold. SQLite's INTEGER is 64 bits already: nothing to change there.

Revision ID: 0004_pgscale
Revises: 0003_vms_ops
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_pgscale"
down_revision = "0003_vms_ops"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("kits", "size", type_=sa.BigInteger(), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("kits", "size", type_=sa.Integer(), existing_nullable=False)
