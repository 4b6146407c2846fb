"""Install the Graphile Worker schema at revision 19 (or adopt an existing one).

Revision ID: gw0019
Revises:
Branch label: graphile_worker
"""

from __future__ import annotations

from alembic import op

from sqlalchemy_graphile.migrations import alembic_schema, install, uninstall

revision = "gw0019"
down_revision = None
branch_labels = ("graphile_worker",)
depends_on = None


def upgrade() -> None:
    install(op.get_bind(), alembic_schema())


def downgrade() -> None:
    uninstall(op.get_bind(), alembic_schema())
