"""Scratch databases on the benchmark's PostgreSQL server, and a few queries on them.

Every measurement gets a fresh database (named ``sg_bench_<pid>_<n>``), dropped when the run
ends, so no run sees the tables, bloat or sequences of another.
"""

from __future__ import annotations

import os
from types import TracebackType

import psycopg
from psycopg import sql
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sqlalchemy_graphile import DEFAULT_SCHEMA, quote_identifier
from sqlalchemy_graphile.errors import ConfigurationError
from sqlalchemy_graphile.migrations import install

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_JOBS = f"{quote_identifier(DEFAULT_SCHEMA)}._private_jobs"


def server_url(given: str | None = None) -> str:
    """The server to benchmark on: ``given``, else ``$DATABASE_URL``, else the local default.

    Returned as a plain ``postgresql://`` URL (any ``+driver`` removed). Raises
    :class:`ConfigurationError` for a URL that is not a PostgreSQL URL.
    """
    text = given or os.environ.get("DATABASE_URL") or DEFAULT_SERVER_URL
    try:
        url = make_url(text)
    except ArgumentError:
        raise ConfigurationError(f"not a database URL: {text!r}") from None
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise ConfigurationError(f"the benchmark needs PostgreSQL, not {url.get_backend_name()!r}")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead."""
    return make_url(url).set(database=name).render_as_string(hide_password=False)


class ScratchDatabases:
    """Creates fresh, empty databases on a server and drops every one of them on close.

    Use it as a context manager. Each :meth:`create` opens its own short autocommit
    connection to the server's URL (``CREATE DATABASE`` cannot run in a transaction).
    """

    def __init__(self, server: str, prefix: str | None = None) -> None:
        self.server = server
        self.prefix = prefix or f"sg_bench_{os.getpid()}"
        self._created: list[str] = []

    def create(self) -> str:
        """Create the next database and return its URL."""
        name = f"{self.prefix}_{len(self._created) + 1}"
        with psycopg.connect(self.server, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._created.append(name)
        return with_database(self.server, name)

    def drop(self, url: str) -> None:
        """Drop one database made by :meth:`create`, closing any session still on it."""
        name = make_url(url).database
        if name not in self._created:
            raise ValueError(f"{name!r} was not created here")
        with psycopg.connect(self.server, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        self._created.remove(name)

    def close(self) -> None:
        """Drop every database still around."""
        for name in list(self._created):
            self.drop(with_database(self.server, name))

    def __enter__(self) -> ScratchDatabases:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def install_our_schema(url: str) -> None:
    """Install the job queue schema with this package's installer (one transaction)."""
    engine = create_engine(
        make_url(url).set(drivername="postgresql+psycopg"), poolclass=pool.NullPool
    )
    try:
        with engine.begin() as connection:
            install(connection, DEFAULT_SCHEMA)
    finally:
        engine.dispose()


def count_jobs(url: str) -> tuple[int, int]:
    """``(jobs left, of which with an error)`` in the default schema."""
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(
            sql.SQL("select count(*), count(last_error) from {}").format(sql.SQL(_JOBS))
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


#: Server settings that move the numbers most; recorded with every run.
_SETTINGS = ("synchronous_commit", "fsync", "shared_buffers", "max_connections")


def describe_server(url: str) -> dict[str, str]:
    """The server's version and the settings in :data:`_SETTINGS`."""
    with psycopg.connect(url, autocommit=True) as connection:
        version = connection.execute("show server_version").fetchone()
        settings = connection.execute(
            "select name, current_setting(name) from pg_settings where name = any(%s)",
            (list(_SETTINGS),),
        ).fetchall()
    assert version is not None
    return {"postgresql": str(version[0]), **{str(n): str(v) for n, v in settings}}
