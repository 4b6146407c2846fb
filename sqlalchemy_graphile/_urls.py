"""Database URLs: read for asyncpg without SQLAlchemy, and turned into SQLAlchemy URLs for
the driver that is installed.

A worker hands asyncpg the URL itself (``dsn=``), so asyncpg reads it as libpq reads a
connection URI: several hosts, ``?host=/run/postgresql``, ``sslmode``,
``target_session_attrs``, ... :func:`read_url` only drops what SQLAlchemy adds to a URL (the
``+driver`` of the scheme, the query options its dialects read, hosts given as repeated
``host`` options, the port it writes before the path of a URL whose host is in the query),
refuses what asyncpg would fail on, and keeps what messages need (where it connects, the
URL without its password). SQLAlchemy is imported by the functions that return or take a
SQLAlchemy ``URL``, not by this module.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from .errors import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

DATABASE_URL_ENV_VAR = "DATABASE_URL"

_BACKENDS = ("postgresql", "postgres")
# Query options that SQLAlchemy's asyncpg dialect reads itself; asyncpg never sees them.
_SQLALCHEMY_OPTIONS = frozenset(
    {"prepared_statement_cache_size", "prepared_statement_name_func", "async_creator_fn"}
)
# Query options that may name several servers; SQLAlchemy writes one option per server.
_HOST_OPTIONS = ("host", "port")
_EXAMPLE = "postgresql://user:password@host:port/database?option=value"


def database_url_from_env() -> str:
    """``$DATABASE_URL``, or :class:`ConfigurationError` when it is not set."""
    url = os.environ.get(DATABASE_URL_ENV_VAR)
    if not url:
        raise ConfigurationError(
            "no database given: pass a URL or an engine, or set DATABASE_URL "
            "(for example postgresql://postgres@127.0.0.1/postgres)"
        )
    return url


@dataclass(frozen=True)
class ConnectionURL:
    """A PostgreSQL URL read by :func:`read_url`."""

    #: The URL for ``asyncpg.connect(dsn=...)``.
    dsn: str
    #: Its query options, for asyncpg (each once; several hosts or ports comma-separated).
    options: Mapping[str, str]
    #: The query options only SQLAlchemy reads, left out of :attr:`dsn`.
    sqlalchemy_options: Mapping[str, str]
    #: The servers as the URL names them: (host, port or ``""``); empty when it names none.
    servers: tuple[tuple[str, str], ...]
    #: The ports of the ``port`` option, when the servers come from the ``host`` option.
    query_ports: tuple[str, ...]
    #: The database and user the URL names (``""`` when it names none).
    database: str
    user: str

    def address(self) -> str:
        """Where asyncpg connects, for messages: ``host:port/database`` (``host:port`` once
        per server), with what the URL leaves out taken from the ``PG*`` environment
        variables and PostgreSQL's defaults, as asyncpg does."""
        servers = self.servers or ((os.environ.get("PGHOST") or "localhost", ""),)
        ports = self.query_ports or (os.environ.get("PGPORT") or "5432",)
        shown = []
        for index, (host, port) in enumerate(servers):
            port = port or (ports[index] if len(ports) > 1 else ports[0])
            shown.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        name = (
            self.database
            or os.environ.get("PGDATABASE")
            or self.user
            or os.environ.get("PGUSER")
            or "the default"
        )
        return f"{','.join(shown)}/{name}"


def read_url(url: str) -> ConnectionURL:
    """``url`` (``postgresql://`` or ``postgres://``, with or without a SQLAlchemy
    ``+driver``) read for asyncpg, without connecting.

    Raises :class:`ConfigurationError` for a string that is not such a URL, a URL of another
    database, a query that is not ``key=value`` pairs or gives an option twice, a host list
    with an empty host or a port that is not a number, and more ports than hosts.
    """
    scheme, separator, rest = url.partition("://")
    if not separator or not scheme:
        raise ConfigurationError(
            f"not a database URL (expected {_EXAMPLE}; key=value connection strings are not read)"
        )
    backend = scheme.partition("+")[0]
    if backend not in _BACKENDS:
        raise ConfigurationError(f"only PostgreSQL is supported, not {backend!r}")
    dsn = f"postgresql://{rest}"
    try:
        parts = urlsplit(dsn)
        pairs = parse_qsl(parts.query, strict_parsing=True) if parts.query else []
    except ValueError as error:
        raise ConfigurationError(f"not a database URL: {shown_url(url)!r}: {error}") from None
    options: dict[str, str] = {}
    sqlalchemy_options: dict[str, str] = {}
    for key, value in pairs:
        into = sqlalchemy_options if key in _SQLALCHEMY_OPTIONS else options
        if key in into and key not in _HOST_OPTIONS:
            raise ConfigurationError(f"the URL gives the query option {key!r} more than once")
        into[key] = f"{into[key]},{value}" if key in into else value
    if parts.netloc.count("@") > 1:
        raise ConfigurationError(
            f"the URL {shown_url(url)!r} has more than one '@': write an '@' in the user name "
            "or password as %40"
        )
    auth, at, hostlist = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if hostlist.startswith(":"):
        # A port without a host, as SQLAlchemy writes a URL whose host is in the query:
        # libpq reads it as that port of the default host, asyncpg as a host named "".
        port = unquote(hostlist[1:])
        if not port.isdigit():
            raise ConfigurationError(f"the URL's port {port!r} is not a number")
        options.setdefault("port", port)
        hostlist, netloc = "", f"{auth}{at}"
    servers = _servers(hostlist, encoded=True) if hostlist else ()
    ports = [p for p in options.get("port", "").split(",") if p]
    query_ports: tuple[str, ...] = ()
    if not servers:  # asyncpg reads the host and port options only then
        servers = _servers(options["host"], encoded=False) if options.get("host") else ()
        query_ports = tuple(ports)
    if any(not port.isdigit() for port in ports):
        raise ConfigurationError(f"the URL's port option {options['port']!r} is not a number")
    if len(query_ports) > 1 and len(query_ports) != max(len(servers), 1):
        raise ConfigurationError(
            f"the URL gives {len(query_ports)} ports for {max(len(servers), 1)} hosts"
        )
    query = f"?{urlencode(options)}" if options else ""
    return ConnectionURL(
        dsn=f"postgresql://{netloc}{parts.path}{query}",
        options=options,
        sqlalchemy_options=sqlalchemy_options,
        servers=servers,
        query_ports=query_ports,
        database=unquote(parts.path[1:]) or options.get("dbname") or options.get("database", ""),
        user=unquote(auth.partition(":")[0]) or options.get("user", ""),
    )


def _servers(hostlist: str, *, encoded: bool) -> tuple[tuple[str, str], ...]:
    """The (host, port) pairs of a libpq host list: ``h1:5432,[::1]:5433,/run/postgresql``
    (each host and port percent-encoded when ``encoded``)."""
    servers = []
    for spec in hostlist.split(","):
        if spec.startswith("/"):  # a Unix socket's directory
            host, port = spec, ""
        elif spec.startswith("["):
            host, close, port = spec[1:].partition("]")
            if not close or port[:1] not in ("", ":"):
                raise ConfigurationError(f"the URL's IPv6 host {spec!r} is malformed")
            port = port[1:]
        else:
            host, _, port = spec.partition(":")
        if encoded:
            host, port = unquote(host), unquote(port)
        if not host:
            raise ConfigurationError(f"the URL's host list {hostlist!r} has an empty host")
        if port and not port.isdigit():
            raise ConfigurationError(f"the URL's port {port!r} (host {host!r}) is not a number")
        servers.append((host, port))
    return tuple(servers)


def with_query_option(url: str, key: str, value: str) -> str:
    """``url`` with the query option ``key`` set to ``value`` (replacing any it had), edited
    as text; the URL is read, and refused if it is not one, where it is used."""
    head, hash_mark, fragment = url.partition("#")
    base, _, query = head.partition("?")
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != key]
    return f"{base}?{urlencode([*kept, (key, value)])}{hash_mark}{fragment}"


def shown_url(url: str) -> str:
    """``url`` for messages, with the password in it (before the host or as the
    ``password`` query option) shown as ``***``; ``the given database`` when it is not a
    URL at all."""
    scheme, separator, rest = url.partition("://")
    if not separator or not scheme:
        return "the given database"
    netloc_end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    auth, at, hostlist = rest[:netloc_end].rpartition("@")
    user, colon, _password = auth.partition(":")
    shown = f"{scheme}://{user}{colon and ':***'}{at}{hostlist}"
    path, question, query = rest[netloc_end:].partition("?")
    if question:
        query, hash_mark, fragment = query.partition("#")
        fields = ["password=***" if f.startswith("password=") else f for f in query.split("&")]
        query = "&".join(fields) + hash_mark + fragment
    return f"{shown}{path}{question}{query}"


def _base(url: str | URL) -> URL:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgres":  # the Heroku-style scheme
        parsed = parsed.set(drivername="postgresql" + parsed.drivername[len("postgres") :])
    elif backend != "postgresql":
        raise ConfigurationError(f"only PostgreSQL is supported, not {backend!r}")
    return parsed


def async_url(url: str | URL) -> URL:
    """The URL for an asyncpg engine: a plain ``postgresql://`` URL gets ``+asyncpg``."""
    parsed = _base(url)
    if parsed.drivername != "postgresql+asyncpg":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed


def sync_url(url: str | URL) -> URL:
    """The URL for a sync engine. A plain ``postgresql://`` URL picks psycopg 3 if it is
    installed, else psycopg2; with neither, :class:`ConfigurationError` (use
    :func:`async_url` and an async engine instead)."""
    parsed = _base(url)
    if "+" in parsed.drivername:
        return parsed
    for module, driver in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return parsed.set(drivername=f"postgresql+{driver}")
    raise ConfigurationError("no sync PostgreSQL driver installed (pip install psycopg)")


def prefers_async(url: str | URL) -> bool:
    """Whether ``url`` should be served by an async engine: it names asyncpg, or it names no
    driver and no sync driver is installed."""
    parsed = _base(url)
    if "+" in parsed.drivername:
        return parsed.get_driver_name() == "asyncpg"
    return all(importlib.util.find_spec(m) is None for m in ("psycopg", "psycopg2"))
