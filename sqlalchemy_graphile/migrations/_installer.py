"""Install, adopt, check and remove the schema on a SQLAlchemy ``Connection``.

The same code serves the Alembic revision (on Alembic's connection and transaction),
:meth:`WorkerUtils.migrate` and the command line's schema commands. Each function joins the
transaction already open on the connection and never commits. The ledger statements and the
compatibility decision live in :mod:`._ledger`, which the worker uses without SQLAlchemy.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, text

from .._identifiers import quote_identifier, validate_schema_name
from ..errors import SchemaError
from . import _ddl, _ledger
from ._ledger import LedgerState, check_compatible

logger = logging.getLogger("sqlalchemy_graphile.migrations")

_MIN_SERVER_VERSION = 120000  # generated columns need PostgreSQL 12


def read_ledger(connection: Connection, schema: str) -> LedgerState:
    """Read the ledger of ``schema`` (no locks, no writes) in the connection's transaction,
    with the statements the worker's start-up check uses. Raises
    :class:`InvalidIdentifierError` for an unsafe schema name; database errors propagate."""
    probe = connection.exec_driver_sql(_ledger.probe_sql(schema)).one()
    statement = _ledger.latest_sql(schema, probe)
    latest = None if statement is None else connection.exec_driver_sql(statement).one()
    return _ledger.ledger_state(probe, latest)


def install(connection: Connection, schema: str) -> bool:
    """Install the schema, or adopt one that Graphile Worker already installed.

    Runs in the caller's transaction. A transaction-level advisory lock serialises
    concurrent installers of the same schema, so they all succeed and one does the work.
    Returns ``True`` when objects were created, ``False`` when an existing schema was adopted.
    Raises :class:`SchemaTooOldError` / :class:`SchemaTooNewError` for a schema this version
    cannot adopt, :class:`SchemaError` on a server older than PostgreSQL 12.
    """
    validate_schema_name(schema)  # before any SQL runs
    version = int(connection.execute(text("show server_version_num")).scalar_one())
    if version < _MIN_SERVER_VERSION:
        raise SchemaError(
            f"the job queue schema needs PostgreSQL 12 or newer (server_version_num is {version})"
        )
    connection.execute(
        text("select pg_advisory_xact_lock(hashtext('sqlalchemy_graphile install'), hashtext(:s))"),
        {"s": schema},
    )
    state = read_ledger(connection, schema)
    if state.exists and state.latest is not None:
        check_compatible(state, schema)
        # Every `run` and `migrate` comes here once the schema exists, whoever installed it:
        # nothing happened worth an INFO line.
        logger.debug("schema %r is already installed, at revision %s", schema, state.latest)
        return False

    for statement in _ddl.install_statements(schema):
        connection.exec_driver_sql(statement)
    logger.info("installed schema %r at revision %s", schema, _ddl.SCHEMA_REVISION)
    return True


def uninstall(connection: Connection, schema: str) -> None:
    """Drop every object :func:`install` creates, then the schema if nothing else is in it.

    Runs in the caller's transaction. Jobs in the schema are deleted with it.
    """
    quoted = quote_identifier(schema)
    for statement in _ddl.drop_objects_statements(schema):
        connection.exec_driver_sql(statement)
    leftovers = connection.execute(
        text(
            "select (select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = :s) + (select count(*) from pg_proc p join pg_namespace n"
            " on n.oid = p.pronamespace where n.nspname = :s) + (select count(*) from pg_type t"
            " join pg_namespace n on n.oid = t.typnamespace where n.nspname = :s)"
        ),
        {"s": schema},
    ).scalar_one()
    if leftovers == 0:
        connection.exec_driver_sql(f"drop schema if exists {quoted}")
