"""Install, adopt, check and remove the schema on a SQLAlchemy ``Connection``.

The same code serves the Alembic revision (on Alembic's connection and transaction),
:meth:`WorkerUtils.migrate` and the command line's schema commands. Each function joins the
transaction already open on the connection and never commits. The ledger statements are the
query catalog's and the compatibility decision lives in :mod:`._ledger`; the worker uses
both without SQLAlchemy.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, text

from .._catalog import catalog_for
from .._identifiers import schema_name
from ..errors import SchemaError
from . import _ddl, _ledger, _recovery_ddl
from ._ledger import LedgerState, check_compatible

logger = logging.getLogger("sqlalchemy_graphile.migrations")

_MIN_SERVER_VERSION = 120000  # generated columns need PostgreSQL 12


def read_ledger(connection: Connection, schema: str) -> LedgerState:
    """Read the ledger of ``schema`` (no locks, no writes) in the connection's transaction,
    with the statements the worker's start-up check uses. Raises
    :class:`InvalidIdentifierError` for an unsafe schema name; database errors propagate."""
    statements = catalog_for(schema).ledger
    probe = connection.execute(statements.probe.clause).one()
    statement = statements.latest_after(probe)
    latest = None if statement is None else connection.execute(statement.clause).one()
    return _ledger.ledger_state(probe, latest)


def install(connection: Connection, schema: str, *, recovery: bool = True) -> bool:
    """Install the schema, or adopt one that Graphile Worker already installed.

    Brings the schema to revision 19 and then, unless ``recovery`` is false, adds the
    worker-recovery objects of revision 20 (:func:`install_recovery`). Runs in the caller's
    transaction. A transaction-level advisory lock serialises concurrent installers of the
    same schema, so they all succeed and one does the work. Returns ``True`` when objects
    were created, ``False`` when an existing schema was adopted as it is.
    Raises :class:`SchemaTooOldError` / :class:`SchemaTooNewError` for a schema this version
    cannot adopt, :class:`SchemaError` on a server older than PostgreSQL 12 or for a ledger
    at 20 whose recovery objects are missing.
    """
    schema = schema_name(schema)  # validated once, before any SQL runs
    installed = _install_base(connection, schema)
    added = False
    if recovery:
        latest = read_ledger(connection, schema).latest
        assert latest is not None  # the base install made or checked the ledger
        added = _add_recovery(connection, schema, latest, log=not installed)
    if installed:
        logger.info(
            "installed schema %r at revision %s",
            schema,
            _recovery_ddl.RECOVERY_REVISION if recovery else _ddl.SCHEMA_REVISION,
        )
    return installed or added


def install_recovery(connection: Connection, schema: str) -> bool:
    """Add the worker-recovery objects (ledger id 20, not breaking) to a schema at 19.

    Runs in the caller's transaction, behind the installers' advisory lock. A schema whose
    ledger already records 20 (the Rust port applied it, or we did) is adopted unchanged,
    after checking that the objects are there. Returns ``True`` when objects were created.
    Raises :class:`SchemaNotInstalledError` / :class:`SchemaTooOldError` /
    :class:`SchemaTooNewError` as :func:`check_compatible` does, and :class:`SchemaError`
    when the ledger records 20 but objects of it are missing.
    """
    schema = schema_name(schema)  # validated once, before any SQL runs
    _lock_installers(connection, schema)
    state = read_ledger(connection, schema)
    check_compatible(state, schema)
    assert state.latest is not None  # check_compatible refuses a ledger without rows
    return _add_recovery(connection, schema, state.latest, log=True)


def _add_recovery(connection: Connection, schema: str, latest: int, *, log: bool) -> bool:
    if latest >= _recovery_ddl.RECOVERY_REVISION:
        missing = connection.exec_driver_sql(
            _recovery_ddl.missing_recovery_objects_sql(schema)
        ).scalar_one()
        if missing:
            raise SchemaError(
                f"the ledger of schema {schema!r} records revision "
                f"{_recovery_ddl.RECOVERY_REVISION} (worker recovery) but these of its objects "
                f"are missing: {', '.join(missing)}"
            )
        return False
    for statement in _recovery_ddl.install_recovery_statements(schema):
        connection.exec_driver_sql(statement)
    if log:
        logger.info(
            "added the worker-recovery objects (revision %s) to schema %r",
            _recovery_ddl.RECOVERY_REVISION,
            schema,
        )
    return True


def uninstall_recovery(connection: Connection, schema: str) -> None:
    """Remove exactly the worker-recovery objects and the ledger row 20, in the caller's
    transaction (the registry of workers is deleted with them)."""
    schema = schema_name(schema)  # validated once, before any SQL runs
    _lock_installers(connection, schema)
    for statement in _recovery_ddl.uninstall_recovery_statements(schema):
        connection.exec_driver_sql(statement)


def _lock_installers(connection: Connection, schema: str) -> None:
    connection.execute(
        text("select pg_advisory_xact_lock(hashtext('sqlalchemy_graphile install'), hashtext(:s))"),
        {"s": schema},
    )


def _install_base(connection: Connection, schema: str) -> bool:
    schema = schema_name(schema)  # validated once, before any SQL runs
    version = int(connection.execute(text("show server_version_num")).scalar_one())
    if version < _MIN_SERVER_VERSION:
        raise SchemaError(
            f"the job queue schema needs PostgreSQL 12 or newer (server_version_num is {version})"
        )
    _lock_installers(connection, schema)
    state = read_ledger(connection, schema)
    if state.exists and state.latest is not None:
        check_compatible(state, schema)
        # Every `run` and `migrate` comes here once the schema exists, whoever installed it:
        # nothing happened worth an INFO line.
        logger.debug("schema %r is already installed, at revision %s", schema, state.latest)
        return False

    for statement in _ddl.install_statements(schema):
        connection.exec_driver_sql(statement)
    return True


def uninstall(connection: Connection, schema: str) -> None:
    """Drop every object :func:`install` creates, then the schema if nothing else is in it.

    Runs in the caller's transaction. Jobs in the schema are deleted with it.
    """
    schema = schema_name(schema)
    quoted = schema.quoted
    statements = _recovery_ddl.drop_recovery_objects_statements(schema)
    for statement in statements + _ddl.drop_objects_statements(schema):
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
