"""Turning connection strings into SQLAlchemy URLs for the driver that is installed."""

from __future__ import annotations

import importlib.util
import os

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from .errors import ConfigurationError

DATABASE_URL_ENV_VAR = "DATABASE_URL"


def database_url_from_env() -> str:
    """``$DATABASE_URL``, or :class:`ConfigurationError` when it is not set."""
    url = os.environ.get(DATABASE_URL_ENV_VAR)
    if not url:
        raise ConfigurationError(
            "no database given: pass a URL or an engine, or set DATABASE_URL "
            "(for example postgresql://postgres@127.0.0.1/postgres)"
        )
    return url


def shown_url(url: str) -> str:
    """``url`` for messages, with its password hidden (``the given database`` when it is
    not a URL at all)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "the given database"


def _base(url: str | URL) -> URL:
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
