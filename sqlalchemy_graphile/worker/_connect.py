"""Where the worker connects: a URL or a caller's ``AsyncEngine``, turned into the keyword
arguments of ``asyncpg.connect`` for the worker's own asyncpg pool and LISTEN connection.

A caller's engine is only read (its URL and ``connect_args``); the worker never disposes it.
A URL string is read without SQLAlchemy (see :func:`~sqlalchemy_graphile._urls.asyncpg_options`),
so a worker given one does not import SQLAlchemy until a task adds a job.
"""

from __future__ import annotations

import errno
import inspect
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import urlsplit

import asyncpg

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

from .._poolers import Pooler, asyncpg_engine_connect_args
from .._urls import async_url, asyncpg_options, database_url_from_env
from ..errors import ConfigurationError, DatabaseConnectionError, GraphileWorkerError

#: ``application_name`` of the worker's connections unless the URL or engine sets one.
DEFAULT_APPLICATION_NAME = "sg-worker"
#: Suffix of the LISTEN connection's ``application_name``.
LISTEN_SUFFIX = "-listen"
_MAX_APPLICATION_NAME = 63

# The errnos of a server that cannot be reached (see is_unreachable).
_UNREACHABLE = frozenset(
    {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT}
)

# Query options SQLAlchemy's asyncpg dialect consumes itself; asyncpg never sees them.
_SQLALCHEMY_ONLY = frozenset(
    {"prepared_statement_cache_size", "prepared_statement_name_func", "async_creator_fn"}
)
_ASYNCPG_OPTIONS = frozenset(inspect.signature(asyncpg.connect).parameters) - {"dsn", "loop"}
# Options the worker sets itself.
_RESERVED = frozenset({"statement_cache_size", "connection_class", "record_class"})


@dataclass(frozen=True)
class Database:
    """The resolved connection target: ``url`` as given (a string, or a SQLAlchemy ``URL``
    when one was given or read from the engine)."""

    url: str | URL
    engine: AsyncEngine | None
    connect_kwargs: Mapping[str, Any]
    application_name: str = DEFAULT_APPLICATION_NAME
    server_settings: Mapping[str, str] = field(default_factory=dict)

    @property
    def listen_application_name(self) -> str:
        """``application_name`` of the LISTEN connection: the worker's name + ``-listen``."""
        return self.application_name[: _MAX_APPLICATION_NAME - len(LISTEN_SUFFIX)] + LISTEN_SUFFIX

    def make_engine(self, pooler: Pooler | None) -> AsyncEngine:
        """The caller's engine, or a new asyncpg engine for :attr:`url` with the same
        connection options, safe behind ``pooler`` (the caller of this method then owns
        it)."""
        if self.engine is not None:
            return self.engine
        from sqlalchemy.ext.asyncio import create_async_engine  # only when needed: it is slow

        url = async_url(self.url)
        query = {k: v for k, v in url.query.items() if k in _SQLALCHEMY_ONLY}
        return create_async_engine(
            url.set(query=query),
            connect_args={
                **self.asyncpg_kwargs(
                    application_name=self.application_name, prepared_statements=True
                ),
                **asyncpg_engine_connect_args(pooler),
            },
        )

    def address(self) -> str:
        """Where the worker connects, for messages: ``host:port/database``, with what the
        connection options leave out taken from the ``PG*`` environment variables and
        PostgreSQL's defaults, as the driver does."""
        kwargs = self.connect_kwargs
        host, port, name = kwargs.get("host"), kwargs.get("port"), kwargs.get("database")
        dsn = kwargs.get("dsn")
        if isinstance(dsn, str) and host is None:
            parts = urlsplit(dsn)
            host = parts.netloc.rpartition("@")[2] or None
            name = name or parts.path.lstrip("/") or None
        if isinstance(host, list | tuple):
            host = ",".join(str(h) for h in host)
        if isinstance(port, list | tuple):
            port = ",".join(str(p) for p in port)
        host = host or os.environ.get("PGHOST") or "localhost"
        name = name or os.environ.get("PGDATABASE") or kwargs.get("user") or "the default"
        if ":" not in str(host).rpartition("]")[2]:  # no port in the host text
            host = f"{host}:{port or os.environ.get('PGPORT') or 5432}"
        return f"{host}/{name}"

    def asyncpg_kwargs(self, *, application_name: str, prepared_statements: bool) -> dict[str, Any]:
        """Keyword arguments for ``asyncpg.connect`` / ``asyncpg.create_pool``. The only
        startup parameters are ``application_name`` and those the URL or engine gives:
        poolers refuse the ones they do not know (the batch fetch turns ``jit`` off
        per transaction instead, see ``_jit``)."""
        kwargs = dict(self.connect_kwargs)
        kwargs["server_settings"] = {
            **self.server_settings,
            "application_name": application_name,
        }
        if not prepared_statements:
            kwargs["statement_cache_size"] = 0
        return kwargs


def connection_failure(
    database: Database, schema: str, error: BaseException
) -> GraphileWorkerError:
    """The error to raise for ``error``, which the driver raised while the worker connected
    to its database or checked the schema at start: a :class:`DatabaseConnectionError`
    naming the host, port, database and schema, and what went wrong (raise it ``from``
    ``error``). Our own errors (a :class:`SchemaError`, ...) are returned as they are."""
    if isinstance(error, GraphileWorkerError):
        return error
    verb = "use" if isinstance(error, asyncpg.PostgresError) else "connect to"
    reason = " ".join(str(error).split()) or "no details"
    return DatabaseConnectionError(
        f"cannot {verb} the database at {database.address()} (schema {schema!r}): "
        f"{type(error).__name__}: {reason}"
    )


def is_unreachable(error: BaseException) -> bool:
    """Whether ``error`` is what connecting to a server that cannot be reached raises: a
    host name that does not resolve, a refused or timed-out connection, an unreachable
    network (or several of these, one per address tried). A broken pipe or a file error is
    not one."""
    if isinstance(error, socket.gaierror | ConnectionRefusedError | TimeoutError):
        return True
    if type(error) is not OSError:
        return False
    return error.errno in _UNREACHABLE or str(error).startswith("Multiple exceptions:")


def resolve_database(database: object) -> Database:
    """Resolve the ``database`` argument of :class:`Worker`: ``None`` (``$DATABASE_URL``), a
    URL string or :class:`sqlalchemy.engine.URL`, or an :class:`AsyncEngine`.

    Raises :class:`ConfigurationError` for anything else, for a non-PostgreSQL URL and for
    connection options asyncpg does not understand.
    """
    if database is None:
        database = database_url_from_env()
    if _is_async_engine(database):
        return _from_engine(database)
    if isinstance(database, str):
        options = asyncpg_options(database)
        if options is not None:
            return _from_options(database, None, options)
    if isinstance(database, str) or _is_sqlalchemy_url(database):
        url = _parsed_url(database)
        return _from_options(url, None, _url_options(url))
    raise ConfigurationError(
        "database must be a URL (str or sqlalchemy.engine.URL) or an AsyncEngine, "
        f"not {type(database).__name__}"
    )


def _is_async_engine(value: object) -> TypeGuard[AsyncEngine]:
    # An AsyncEngine can only exist once SQLAlchemy's asyncio extension is imported.
    module = sys.modules.get("sqlalchemy.ext.asyncio")
    return module is not None and isinstance(value, module.AsyncEngine)


def _is_sqlalchemy_url(value: object) -> TypeGuard[URL]:
    # Likewise, a SQLAlchemy URL can only exist once SQLAlchemy is imported.
    module = sys.modules.get("sqlalchemy.engine.url")
    return module is not None and isinstance(value, module.URL)


def _parsed_url(database: str | URL) -> URL:
    """SQLAlchemy's reading of ``database``, for the URLs :func:`asyncpg_options` leaves to
    it (malformed ones, several hosts) and for SQLAlchemy ``URL`` objects."""
    from sqlalchemy.exc import ArgumentError

    try:
        return async_url(database)
    except ArgumentError as error:
        raise ConfigurationError(f"not a database URL: {error}") from None


def _url_options(url: URL) -> dict[str, Any]:
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

    dialect_class: Any = PGDialect_asyncpg
    dialect = dialect_class()
    _args, options = dialect.create_connect_args(url)
    return dict(options)


def _from_engine(engine: AsyncEngine) -> Database:
    url = async_url(engine.url)
    if engine.dialect.driver != "asyncpg":
        return _from_options(url, engine, _url_options(url))
    options = _url_options(url)
    # create_async_engine(connect_args=...) keeps them only in its connection factory.
    creator = getattr(engine.sync_engine.pool, "_creator", None)
    if creator is not None:
        captured = inspect.getclosurevars(creator).nonlocals.get("cparams")
        if isinstance(captured, Mapping):
            options = dict(captured)
    # The engine's statement cache is the engine's (docs/poolers.md turns it off for a
    # pooler); the worker's own connections follow prepared_statements and pooler.
    options.pop("statement_cache_size", None)
    return _from_options(url, engine, options)


def _from_options(url: str | URL, engine: AsyncEngine | None, options: dict[str, Any]) -> Database:
    for key in _SQLALCHEMY_ONLY:
        options.pop(key, None)
    settings = dict(options.pop("server_settings", None) or {})
    if "application_name" in options:
        settings["application_name"] = str(options.pop("application_name"))
    if "sslmode" in options:
        options["ssl"] = options.pop("sslmode")
    unknown = sorted(set(options) - _ASYNCPG_OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"connection options not understood by asyncpg: {', '.join(unknown)}"
        )
    reserved = sorted(set(options) & _RESERVED)
    if reserved:
        raise ConfigurationError(
            f"connection options set by the worker itself: {', '.join(reserved)} "
            "(use prepared_statements=False to turn off statement caching)"
        )
    name = settings.pop("application_name", None) or DEFAULT_APPLICATION_NAME
    if len(name) > _MAX_APPLICATION_NAME:
        raise ConfigurationError(
            f"application_name is longer than {_MAX_APPLICATION_NAME} characters: {name!r}"
        )
    return Database(url, engine, options, name, settings)
