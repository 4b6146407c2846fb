"""Add the worker-recovery objects: ledger id 20, as the Graphile Worker Rust port names it.

Revision ID: gw0020
Revises: gw0019

A registry of live worker pools (``_private_workers``) and the functions of the heartbeat and
the recovery sweep, with the names, signatures and behaviour of the Rust port's revision 20,
which is not breaking (Graphile Worker 0.17 warns about it and carries on). Online, a schema
whose ledger already records 20 is adopted unchanged once its objects are found. Offline
(``--sql``) the script is a fresh install of 20. Downgrade removes exactly these objects and
the ledger row 20.
"""

from __future__ import annotations

from alembic import context, op

from sqlalchemy_graphile.migrations import alembic_schema, install_recovery, uninstall_recovery
from sqlalchemy_graphile.migrations._recovery_ddl import (
    install_recovery_statements,
    uninstall_recovery_statements,
)

revision = "gw0020"
down_revision = "gw0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = alembic_schema()
    if context.is_offline_mode():
        for statement in install_recovery_statements(schema):
            op.execute(statement)
    else:
        install_recovery(op.get_bind(), schema)


def downgrade() -> None:
    schema = alembic_schema()
    if context.is_offline_mode():
        for statement in uninstall_recovery_statements(schema):
            op.execute(statement)
    else:
        uninstall_recovery(op.get_bind(), schema)
