"""Where the worker connects: a URL, a SQLAlchemy ``URL`` or a caller's ``AsyncEngine``,
turned into the keyword arguments of ``asyncpg.connect`` for the worker's own asyncpg pool
and LISTEN connection.

asyncpg reads the URL itself (``dsn=``, see :func:`~sqlalchemy_graphile._urls.read_url`), so a
worker given a URL string does not import SQLAlchemy (its tasks' adds included; only
:attr:`Worker.utils` does). A SQLAlchemy ``URL``, or an engine's, is rendered back to its
string through SQLAlchemy's public API and read the same way; the engine itself is only
kept for :attr:`Worker.utils`, never disposed.
"""

from __future__ import annotations

import errno
import inspect
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

import asyncpg

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

from .._poolers import Pooler, asyncpg_engine_connect_args
from .._urls import ConnectionURL, database_url_from_env, read_url
from ..errors import ConfigurationError, DatabaseConnectionError, GraphileWorkerError

#: ``application_name`` of the worker's connections unless the URL sets one.
DEFAULT_APPLICATION_NAME = "sg-worker"
#: Suffix of the LISTEN connection's ``application_name``.
LISTEN_SUFFIX = "-listen"
_MAX_APPLICATION_NAME = 63

# The errnos of a server that cannot be reached (see is_unreachable).
_UNREACHABLE = frozenset(
    {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT}
)

# Arguments of asyncpg.connect that its reading of a URL does not take from the query (it
# would send them to the server as settings, which the server refuses).
_ARGUMENTS_ONLY = frozenset(inspect.signature(asyncpg.connect).parameters) - {
    "dsn",
    "host",
    "port",
    "user",
    "password",
    "passfile",
    "database",
    "target_session_attrs",
    "krbsrvname",
    "gsslib",
    "service",
}
# Options the worker sets itself.
_RESERVED = frozenset({"statement_cache_size", "connection_class", "record_class"})
# libpq's connection options that asyncpg does not read (it would send them as settings).
_LIBPQ_ONLY = frozenset(
    {
        "channel_binding",
        "connect_timeout",
        "fallback_application_name",
        "gssencmode",
        "hostaddr",
        "keepalives",
        "keepalives_count",
        "keepalives_idle",
        "keepalives_interval",
        "load_balance_hosts",
        "require_auth",
        "requirepeer",
        "sslcompression",
        "sslsni",
        "tcp_user_timeout",
    }
)


@dataclass(frozen=True)
class Database:
    """The resolved connection target: the URL as asyncpg reads it, and the caller's
    engine when one was given."""

    url: ConnectionURL
    engine: AsyncEngine | None
    application_name: str = DEFAULT_APPLICATION_NAME

    @property
    def listen_application_name(self) -> str:
        """``application_name`` of the LISTEN connection: the worker's name + ``-listen``."""
        return self.application_name[: _MAX_APPLICATION_NAME - len(LISTEN_SUFFIX)] + LISTEN_SUFFIX

    def make_engine(self, pooler: Pooler | None) -> AsyncEngine:
        """The caller's engine, or a new asyncpg engine connecting as the worker does, safe
        behind ``pooler`` (the caller of this method then owns it). Imports SQLAlchemy."""
        if self.engine is not None:
            return self.engine
        from sqlalchemy.engine import URL  # only when needed: it is slow
        from sqlalchemy.ext.asyncio import create_async_engine

        # The URL carries only what SQLAlchemy reads; asyncpg reads the rest from dsn=.
        url = URL.create("postgresql+asyncpg", query=dict(self.url.sqlalchemy_options))
        return create_async_engine(
            url,
            connect_args={
                **self.asyncpg_kwargs(
                    application_name=self.application_name, prepared_statements=True
                ),
                **asyncpg_engine_connect_args(pooler),
            },
        )

    def address(self) -> str:
        """Where the worker connects, for messages: ``host:port/database``, with what the
        URL leaves out taken from the ``PG*`` environment variables and PostgreSQL's
        defaults, as the driver does."""
        return self.url.address()

    def asyncpg_kwargs(self, *, application_name: str, prepared_statements: bool) -> dict[str, Any]:
        """Keyword arguments for ``asyncpg.connect`` / ``asyncpg.create_pool``: the URL as
        ``dsn`` and ``application_name``. The only startup parameters are
        ``application_name`` and the settings the URL gives: poolers refuse the ones they do
        not know (the batch fetch turns ``jit`` off per transaction instead, see
        ``_store/_asyncpg.py``)."""
        kwargs: dict[str, Any] = {
            "dsn": self.url.dsn,
            "server_settings": {"application_name": application_name},
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
    URL string or :class:`sqlalchemy.engine.URL`, or an :class:`AsyncEngine` (of any
    PostgreSQL driver: the worker connects with asyncpg to the engine's URL).

    Raises :class:`ConfigurationError` for anything else, for a string that is not a
    PostgreSQL URL (see :func:`~sqlalchemy_graphile._urls.read_url`) and for query options
    asyncpg does not read from a URL.
    """
    if database is None:
        database = database_url_from_env()
    if isinstance(database, str):
        return _from_url(database, None)
    if _is_async_engine(database):
        return _from_url(_rendered(database.url), database)
    if _is_sqlalchemy_url(database):
        return _from_url(_rendered(database), None)
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


def _rendered(url: URL) -> str:
    rendered: str = url.render_as_string(hide_password=False)
    return rendered


def _from_url(url: str, engine: AsyncEngine | None) -> Database:
    parsed = read_url(url)
    options = set(parsed.options)
    reserved = sorted(options & _RESERVED)
    if reserved:
        raise ConfigurationError(
            f"connection options set by the worker itself: {', '.join(reserved)} "
            "(use prepared_statements=False to turn off statement caching)"
        )
    unread = sorted(options & (_ARGUMENTS_ONLY | _LIBPQ_ONLY))
    if unread:
        raise ConfigurationError(
            f"connection options that asyncpg does not read from a URL: {', '.join(unread)} "
            "(a URL's options are libpq's that asyncpg supports, such as sslmode, and server "
            "settings)"
        )
    name = parsed.options.get("application_name") or DEFAULT_APPLICATION_NAME
    if len(name) > _MAX_APPLICATION_NAME:
        raise ConfigurationError(
            f"application_name is longer than {_MAX_APPLICATION_NAME} characters: {name!r}"
        )
    return Database(parsed, engine, name)
