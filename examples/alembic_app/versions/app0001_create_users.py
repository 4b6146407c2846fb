"""Create the users table.

Revision ID: app0001
Revises: gw0019

The app's first revision builds on sqlalchemy-graphile's ``gw0019``, which makes one history
with a single head: ``alembic upgrade head`` installs the job queue schema, then this.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "app0001"
down_revision = "gw0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.Text(), nullable=False, unique=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_table("users")
