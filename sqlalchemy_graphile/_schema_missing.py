"""Telling "the job queue schema is not installed" apart from other database errors.

The worker checks the schema once, at start-up. Adding jobs does not: a check would cost a
round trip on every add. Instead, the error PostgreSQL raises when a statement names a
schema, function, table or type that does not exist is recognised by its SQLSTATE and turned
into :class:`SchemaNotInstalledError`, with the same hint the worker gives. Neither function
imports a driver or SQLAlchemy: they read the SQLSTATE that asyncpg and psycopg 3
(``sqlstate``) and psycopg2 (``pgcode``) put on their errors, directly or inside SQLAlchemy's
``DBAPIError`` (``orig``).
"""

from __future__ import annotations

from ._identifiers import DEFAULT_SCHEMA
from .errors import SchemaNotInstalledError

#: invalid_schema_name, undefined_function, undefined_table, undefined_object (a type).
MISSING_OBJECT_SQLSTATES = frozenset({"3F000", "42883", "42P01", "42704"})


def not_installed(schema: str, detail: str | None = None) -> SchemaNotInstalledError:
    """The error for a job queue schema that is not installed, with the ways to install it;
    ``detail`` (what the database said) is appended when given."""
    option = "" if schema == DEFAULT_SCHEMA else f" -s {schema}"
    message = (
        f"the job queue schema {schema!r} is not installed: run `sqlalchemy-graphile{option} "
        "migrate`, or `alembic upgrade head` with our revisions in your Alembic history, "
        "or `await WorkerUtils(...).migrate()` first"
    )
    return SchemaNotInstalledError(message if detail is None else f"{message} ({detail})")


def schema_not_installed(error: BaseException, schema: str) -> SchemaNotInstalledError | None:
    """:class:`SchemaNotInstalledError` for ``schema`` if ``error`` is the database saying
    that an object a job queue statement uses does not exist; ``None`` for any other error.

    Call it where a statement on the job queue failed, and raise what it returns (``from
    None``: the message carries the database's own words). It changes nothing: a
    transaction the error aborted stays as the driver left it, for its owner to roll back.
    """
    driver_error = getattr(error, "orig", None) or error
    sqlstate = getattr(driver_error, "sqlstate", None) or getattr(driver_error, "pgcode", None)
    if sqlstate not in MISSING_OBJECT_SQLSTATES:
        return None
    # SQLAlchemy's asyncpg adapter wraps asyncpg's own error, whose text is the plainer one.
    said = str(driver_error.__cause__ or driver_error).strip().splitlines()
    return not_installed(schema, f"PostgreSQL said: {said[0]}" if said else None)
