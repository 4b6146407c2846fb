"""Install the Graphile Worker schema at revision 19 (or adopt an existing one).

Revision ID: gw0019
Revises:
Branch label: graphile_worker

Online, the installer checks what is already there: it adopts a schema that Graphile Worker
(Node or Rust) or an earlier run installed, and refuses one it cannot run on. Offline
(``alembic upgrade head --sql``) nothing can be checked, so the script is a fresh install;
run against an installed schema it stops on the ledger's primary key. An offline downgrade
drops our objects but leaves the (then empty) schema in place.
"""

from __future__ import annotations

from alembic import context, op

from sqlalchemy_graphile.migrations import alembic_schema, install, uninstall
from sqlalchemy_graphile.migrations._ddl import drop_objects_statements, install_statements

revision = "gw0019"
down_revision = None
branch_labels = ("graphile_worker",)
depends_on = None


def upgrade() -> None:
    schema = alembic_schema()
    if context.is_offline_mode():
        for statement in install_statements(schema):
            op.execute(statement)
    else:
        install(op.get_bind(), schema, recovery=False)


def downgrade() -> None:
    schema = alembic_schema()
    if context.is_offline_mode():
        for statement in drop_objects_statements(schema):
            op.execute(statement)
    else:
        uninstall(op.get_bind(), schema)
