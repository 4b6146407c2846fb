"""Join the app's history with sqlalchemy-graphile's ``gw0020``.

Revision ID: app0002
Revises: app0001, gw0020

sqlalchemy-graphile added ``gw0020`` (the worker-recovery objects) after ``gw0019``, which
``app0001`` builds on, so the history had two heads; ``alembic merge heads`` made this
revision, which joins them again. It changes nothing itself.
"""

from __future__ import annotations

revision = "app0002"
down_revision = ("app0001", "gw0020")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
