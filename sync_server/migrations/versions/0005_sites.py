"""Remote (branch-office) servers: the sites table, the site a token names, the site a
computer checks in through and the site a relay task brings a kit to.

Revision ID: 0005_sites
Revises: 0004_pgscale
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_sites"
down_revision = "0004_pgscale"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sites",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("version", sa.String(20), nullable=True),
        sa.Column("running", sa.Boolean, nullable=False),
        sa.Column("contact_interval", sa.Float, nullable=False),
        sa.Column("kits", sa.JSON, nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("last_contact", _WHEN, nullable=True),
    )
    # batch: SQLite adds a column with a foreign key only by rebuilding the table.
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("site_id", sa.Integer, nullable=True))
        batch.create_foreign_key("fk_tokens_site", "sites", ["site_id"], ["id"])
    with op.batch_alter_table("computers") as batch:
        batch.add_column(sa.Column("site_id", sa.Integer, nullable=True))
        batch.create_foreign_key("fk_computers_site", "sites", ["site_id"], ["id"])
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("site_id", sa.Integer, nullable=True))
        batch.create_foreign_key("fk_tasks_site", "sites", ["site_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_constraint("fk_tasks_site", type_="foreignkey")
        batch.drop_column("site_id")
    with op.batch_alter_table("computers") as batch:
        batch.drop_constraint("fk_computers_site", type_="foreignkey")
        batch.drop_column("site_id")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_constraint("fk_tokens_site", type_="foreignkey")
        batch.drop_column("site_id")
    op.drop_table("sites")
