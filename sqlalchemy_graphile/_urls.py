"""Turning connection strings into SQLAlchemy URLs for the driver that is installed, and
into asyncpg's connection options without SQLAlchemy.

SQLAlchemy is imported by the functions that return or take a SQLAlchemy ``URL``, not by
this module: a worker given a URL string reads it with :func:`asyncpg_options` and never
imports SQLAlchemy.
"""

from __future__ import annotations

import importlib.util
import os
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlencode

from .errors import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

DATABASE_URL_ENV_VAR = "DATABASE_URL"

# scheme://[user[:password]@][host | [ipv6]][:port][/database][?query], read as
# SQLAlchemy's make_url reads it (a password cannot hold a bare '@').
_URL = re.compile(
    r"(?P<scheme>[\w+]+)://"
    r"(?:(?P<user>[^:/]*)(?::(?P<password>[^@]*))?@)?"
    r"(?:\[(?P<ipv6>[^/?]+)\]|(?P<host>[^/:?]+))?"
    r"(?::(?P<port>[^/?]*))?"
    r"(?:/(?P<database>[^?]*))?"
    r"(?:\?(?P<query>.*))?"
)
# Query options that SQLAlchemy's asyncpg dialect reads itself (hosts and ports in the query
# can name several servers); a URL with any of them is left to SQLAlchemy.
_DIALECT_QUERY_OPTIONS = frozenset({"host", "port", "prepared_statement_cache_size"})


def database_url_from_env() -> str:
    """``$DATABASE_URL``, or :class:`ConfigurationError` when it is not set."""
    url = os.environ.get(DATABASE_URL_ENV_VAR)
    if not url:
        raise ConfigurationError(
            "no database given: pass a URL or an engine, or set DATABASE_URL "
            "(for example postgresql://postgres@127.0.0.1/postgres)"
        )
    return url


def asyncpg_options(url: str) -> dict[str, Any] | None:
    """The keyword arguments for ``asyncpg.connect`` that SQLAlchemy's asyncpg dialect would
    make of ``url`` (host, port, user, password, database and the query options), read
    without importing SQLAlchemy; ``None`` when ``url`` needs SQLAlchemy's own reading (it
    is malformed, or its query names hosts or ports). Raises :class:`ConfigurationError`
    for a URL of another database than PostgreSQL."""
    match = _URL.fullmatch(url)
    if match is None:
        return None
    backend = match["scheme"].split("+", 1)[0]
    if backend not in ("postgresql", "postgres"):
        raise ConfigurationError(f"only PostgreSQL is supported, not {backend!r}")
    port = match["port"]
    if port and not port.isdigit():
        return None
    options: dict[str, Any] = {}
    for key, value in (
        ("host", match["ipv6"] or match["host"]),
        ("database", match["database"] and unquote(match["database"])),
        ("user", match["user"] and unquote(match["user"])),
        ("password", match["password"] and unquote(match["password"])),
        ("port", int(port) if port else None),
    ):
        if value:
            options[key] = value
    query = parse_qsl(match["query"] or "")
    keys = [key for key, _value in query]
    if len(set(keys)) != len(keys) or _DIALECT_QUERY_OPTIONS.intersection(keys):
        return None
    options.update(query)
    return options


def with_query_option(url: str, key: str, value: str) -> str:
    """``url`` with the query option ``key`` set to ``value`` (replacing any it had), edited
    as text without importing SQLAlchemy unless ``url`` is malformed (then SQLAlchemy's
    reading decides, and its ``ArgumentError`` propagates)."""
    match = _URL.fullmatch(url)
    if match is None:
        updated = async_url(url).update_query_dict({key: value})
        return updated.render_as_string(hide_password=False)
    kept = [(k, v) for k, v in parse_qsl(match["query"] or "", keep_blank_values=True) if k != key]
    end = match.start("query") - 1 if match["query"] is not None else len(url)
    return f"{url[:end]}?{urlencode([*kept, (key, value)])}"


def shown_url(url: str) -> str:
    """``url`` for messages, with its password hidden (``the given database`` when it is
    not a URL at all)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "the given database"


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
