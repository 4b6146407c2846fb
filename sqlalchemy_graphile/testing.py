"""Helpers for testing applications that use sqlalchemy-graphile with pytest-postgresql.

Install the schema once into pytest-postgresql's template database, and every test gets a
fresh copy with the schema in place::

    from pytest_postgresql import factories
    from sqlalchemy_graphile.testing import load_schema

    postgresql_noproc = factories.postgresql_noproc(load=[load_schema])
    postgresql = factories.postgresql("postgresql_noproc")
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import URL, create_engine, pool

from ._identifiers import resolve_schema
from ._urls import sync_url
from .migrations import install


def database_url(
    *, host: str, port: int | str, user: str, dbname: str, password: str | None = None
) -> URL:
    """A plain ``postgresql://`` URL for the given connection parameters."""
    return URL.create(
        "postgresql",
        username=user,
        password=password or None,
        host=host,
        port=int(port),
        database=dbname,
    )


def load_schema(
    host: str,
    port: int | str,
    user: str,
    dbname: str,
    password: str | None = None,
    schema: str | None = None,
    **_: Any,
) -> None:
    """A pytest-postgresql ``load`` callable: install the job queue schema in ``dbname``.

    ``schema`` defaults to ``$GRAPHILE_WORKER_SCHEMA`` or ``graphile_worker``. Uses a sync
    driver (psycopg, which pytest-postgresql requires) and commits.
    """
    url = database_url(host=host, port=port, user=user, dbname=dbname, password=password)
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            install(connection, resolve_schema(schema))
    finally:
        engine.dispose()
