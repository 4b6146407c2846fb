"""Installing the job queue schema for a test run: into a database given by URL, or into
pytest-postgresql's template database as one of its ``load`` callables."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import URL, create_engine, pool
from sqlalchemy.ext.asyncio import create_async_engine

from .._identifiers import resolve_schema
from .._urls import async_url, prefers_async, sync_url
from ..migrations import install


def database_url(
    *,
    host: str,
    port: int | str,
    user: str,
    dbname: str,
    password: str | None = None,
    **_: Any,
) -> URL:
    """A plain ``postgresql://`` URL for the given connection parameters. Other keyword
    arguments are ignored, so a pytest-postgresql ``load`` callable can pass on what it is
    given: ``database_url(**connection)``."""
    return URL.create(
        "postgresql",
        username=user,
        password=password or None,
        host=host,
        port=int(port),
        database=dbname,
    )


def install_schema(url: str | URL, schema: str | None = None) -> bool:
    """Install the job queue schema in the database at ``url`` and commit; a schema already
    there is adopted. Returns whether objects were created.

    ``schema`` defaults to ``$GRAPHILE_WORKER_SCHEMA`` or ``graphile_worker``. Concurrent
    callers (xdist workers sharing one database) are serialised by an advisory lock, so they
    all succeed. Runs on a connection of its own, with the driver the URL names (a plain
    ``postgresql://`` URL: psycopg 3, else psycopg2, else asyncpg); call it from synchronous
    code (it runs its own event loop for asyncpg). Raises :class:`InvalidIdentifierError` for
    a bad schema name before connecting, and the errors of
    :func:`sqlalchemy_graphile.migrations.install`.
    """
    name = resolve_schema(schema)
    if prefers_async(url):
        return asyncio.run(_install_async(url, name))
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            return install(connection, name)
    finally:
        engine.dispose()


async def _install_async(url: str | URL, schema: str) -> bool:
    engine = create_async_engine(async_url(url), poolclass=pool.NullPool)
    try:
        async with engine.begin() as connection:
            return await connection.run_sync(install, schema)
    finally:
        await engine.dispose()


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

    ::

        postgresql_noproc = factories.postgresql_noproc(load=[load_schema])
        postgresql = factories.postgresql("postgresql_noproc")

    ``schema`` defaults to ``$GRAPHILE_WORKER_SCHEMA`` or ``graphile_worker`` (for another,
    ``functools.partial(load_schema, schema="jobs")``). Commits.
    """
    url = database_url(host=host, port=port, user=user, dbname=dbname, password=password)
    install_schema(url, schema)
