"""Install, adopt, check and remove the schema on a SQLAlchemy ``Connection``.

The same code serves the Alembic revision (on Alembic's connection and transaction),
:meth:`WorkerUtils.migrate` and the worker's start-up check (through
``AsyncConnection.run_sync``). Each function joins the transaction already open on the
connection and never commits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Connection, text

from .._identifiers import quote_identifier, validate_schema_name
from ..errors import SchemaError, SchemaNotInstalledError, SchemaTooNewError, SchemaTooOldError
from . import _ddl

logger = logging.getLogger("sqlalchemy_graphile.migrations")

_MIN_SERVER_VERSION = 120000  # generated columns need PostgreSQL 12


@dataclass(frozen=True)
class LedgerState:
    """What the ``migrations`` ledger of a schema says."""

    exists: bool
    has_breaking_column: bool = False
    latest: int | None = None
    latest_breaking: int | None = None


def read_ledger(connection: Connection, schema: str) -> LedgerState:
    """Read the ledger of ``schema`` (no locks, no writes)."""
    quoted = quote_identifier(schema)
    row = connection.execute(
        text(
            "select to_regclass(:ledger) is not null as has_ledger,"
            " exists(select 1 from pg_attribute where attrelid = to_regclass(:ledger)"
            " and attname = 'breaking' and not attisdropped) as has_breaking"
        ),
        {"ledger": f"{quoted}.migrations"},
    ).one()
    if not row.has_ledger:
        return LedgerState(exists=False)
    if not row.has_breaking:
        latest = connection.execute(text(f"select max(id) from {quoted}.migrations")).scalar()
        return LedgerState(exists=True, latest=latest)
    latest, latest_breaking = connection.execute(
        text(f"select max(id), max(id) filter (where breaking) from {quoted}.migrations")
    ).one()
    return LedgerState(True, True, latest, latest_breaking)


def check_compatible(state: LedgerState, schema: str) -> None:
    """Raise unless a worker of this version can run on a schema in ``state``.

    Raises :class:`SchemaNotInstalledError`, :class:`SchemaTooOldError` or
    :class:`SchemaTooNewError`; logs a warning for a newer non-breaking revision.
    """
    supported = _ddl.SCHEMA_REVISION
    if not state.exists or state.latest is None:
        raise SchemaNotInstalledError(
            f"the job queue schema {schema!r} is not installed: run `alembic upgrade head` "
            "(or `await WorkerUtils(...).migrate()`, or `sqlalchemy-graphile migrate`) first"
        )
    if state.latest_breaking is not None and state.latest_breaking > supported:
        raise SchemaTooNewError(
            f"database schema {schema!r} is at revision {state.latest}, which includes "
            f"breaking migration {state.latest_breaking}; this version of sqlalchemy-graphile "
            f"supports revisions up to {supported}. Upgrade sqlalchemy-graphile.",
            latest_breaking=state.latest_breaking,
            supported=supported,
        )
    if not state.has_breaking_column or state.latest < supported:
        raise SchemaTooOldError(
            f"database schema {schema!r} is at Graphile Worker revision {state.latest}, older "
            f"than {supported}. Bring it to revision {supported} with Graphile Worker 0.17 "
            "(`npx graphile-worker@0.17 --schema-only`), then run the migration again."
        )
    if state.latest > supported:
        logger.warning(
            "database schema %r is at revision %s, newer than %s; it is not marked as "
            "breaking, so this worker carries on",
            schema,
            state.latest,
            supported,
        )


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
        logger.info("adopted existing schema %r at revision %s", schema, state.latest)
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
