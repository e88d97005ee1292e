"""One computer per enrolment token: `computers.token_id` names the token the computer first
checked in with, unique, so two simultaneous first check-ins with one token cannot both
create a computer (the check-in inserts with ON CONFLICT DO NOTHING and reads the row back).
Existing computers get the token that is bound to them.

Revision ID: 0007_checkin_unique
Revises: 0006_operators
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_checkin_unique"
down_revision = "0006_operators"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("computers", sa.Column("token_id", sa.Integer, nullable=True))
    op.execute(
        "UPDATE computers SET token_id = "
        "(SELECT MIN(tokens.id) FROM tokens WHERE tokens.computer_id = computers.id)"
    )
    op.create_index("ix_computers_token_id", "computers", ["token_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_computers_token_id", table_name="computers")
    with op.batch_alter_table("computers") as batch:
        batch.drop_column("token_id")
