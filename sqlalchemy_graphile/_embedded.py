"""Finding a database for the demo: the one given, else a database of its own on the local
server, else on an embedded server started for it.

The demo never writes into a database it did not create, unless it was given one: on the
server it finds it uses the database ``sqlalchemy_graphile_demo``, which it creates when it
is missing (and says how to drop it).

The embedded server comes from the ``pgserver`` package (``pip install
'sqlalchemy-graphile[embedded]'``): PostgreSQL binaries in a wheel, run on a Unix socket
from a data directory that is kept between runs. It is for trying the project out on a
machine without PostgreSQL, never for production.
"""

from __future__ import annotations

import asyncio
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import pool, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from ._urls import async_url, shown_url
from .errors import ConfigurationError

#: The server tried when no URL is given: a local PostgreSQL with trust authentication
#: (its maintenance database; the demo only connects to it to create its own).
LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
#: The demo's own database on the server it finds.
DEMO_DATABASE = "sqlalchemy_graphile_demo"
#: Overrides the embedded server's data directory.
EMBEDDED_DIR_ENV_VAR = "SG_EMBEDDED_DIR"
#: Set to 1 to use the embedded server even when a local server answers (``demo --embedded``).
EMBEDDED_ENV_VAR = "SG_DEMO_EMBEDDED"

# duplicate_database, and the unique violation a concurrent CREATE DATABASE can raise.
_ALREADY_THERE = frozenset({"42P04", "23505"})


@dataclass(frozen=True)
class FoundDatabase:
    """A database to use, a sentence saying where it came from, whether it is the demo's
    own (found or created by it, not given), and how to remove what the demo made."""

    url: str
    description: str
    own: bool = False
    removal: str | None = None


async def answers(url: str, connect_timeout: float = 2.0) -> bool:
    """Whether a connection to ``url`` succeeds within ``connect_timeout`` seconds."""
    engine = create_async_engine(
        async_url(url), poolclass=pool.NullPool, connect_args={"timeout": connect_timeout}
    )
    try:
        async with engine.connect():
            return True
    except (TimeoutError, OSError, DBAPIError):
        return False
    finally:
        await engine.dispose()


async def find_database(url: str | None, *, embedded: bool = False) -> FoundDatabase:
    """``url`` if given; else the demo's own database on :data:`LOCAL_URL`'s server if it
    answers; else on an embedded server. With ``embedded``, always the embedded server.

    Raises :class:`ConfigurationError` when the embedded server is needed but ``pgserver``
    is not installed, or when the demo may not create its database.
    """
    if embedded:
        return await _embedded("--embedded")
    if url:
        return FoundDatabase(url, f"using {shown_url(url)}")
    if await answers(LOCAL_URL):
        local = make_url(LOCAL_URL)
        return await own_database(LOCAL_URL, f"the local server at {local.host}:{local.port}")
    return await _embedded(f"no server at {LOCAL_URL}")


async def _embedded(why: str) -> FoundDatabase:
    data_dir = embedded_data_dir()
    server_url = await asyncio.to_thread(start_embedded, data_dir)
    found = await own_database(server_url, f"an embedded PostgreSQL in {data_dir} ({why})")
    removal = (
        "The embedded server stops with the demo; its data stays in "
        f"{data_dir}. Remove it with: rm -rf {data_dir}"
    )
    return FoundDatabase(found.url, found.description, own=True, removal=removal)


async def own_database(server_url: str, server: str) -> FoundDatabase:
    """The demo's database :data:`DEMO_DATABASE` on the server of ``server_url`` (a URL of
    any database there), created if it is missing. ``server`` names the server in the
    description. Raises :class:`ConfigurationError` if it is missing and may not be
    created."""
    target = async_url(server_url)
    engine = create_async_engine(target, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    created = False
    try:
        async with engine.connect() as connection:
            exists = await connection.scalar(
                text("select exists(select 1 from pg_database where datname = :name)"),
                {"name": DEMO_DATABASE},
            )
            if not exists:
                created = await _create(connection, server)
    finally:
        await engine.dispose()
    url = make_url(server_url).set(database=DEMO_DATABASE).render_as_string(hide_password=False)
    options = "".join(
        f" {flag} {value}"
        for flag, value in (("-h", target.host), ("-p", target.port), ("-U", target.username))
        if value
    )
    return FoundDatabase(
        url,
        f"{DEMO_DATABASE}, the demo's own, on {server}"
        + ("; created it just now" if created else ""),
        own=True,
        removal=f"To remove it later: dropdb{options} {DEMO_DATABASE}",
    )


async def _create(connection: AsyncConnection, server: str) -> bool:
    """``CREATE DATABASE``; ``False`` if a concurrent run created it first."""
    try:
        await connection.exec_driver_sql(f'create database "{DEMO_DATABASE}"')
    except DBAPIError as error:
        sqlstate = getattr(error.orig, "sqlstate", None)
        if sqlstate in _ALREADY_THERE:
            return False
        raise ConfigurationError(
            f"the demo uses a database of its own, {DEMO_DATABASE}, and could not create it "
            f"on {server} ({_first_line(error.orig)}): create it yourself, or pass -c URL"
        ) from None
    return True


def _first_line(error: object) -> str:
    text = str(getattr(error, "__cause__", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def embedded_data_dir() -> Path:
    """``$SG_EMBEDDED_DIR``; else, as root, ``/var/tmp/sqlalchemy-graphile/pgdata`` (pgserver
    opens up the parent directories to its own system user, which ``/root`` must not get);
    else ``~/.cache/sqlalchemy-graphile/pgdata`` (honouring ``$XDG_CACHE_HOME``)."""
    configured = os.environ.get(EMBEDDED_DIR_ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/tmp/sqlalchemy-graphile/pgdata")
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "sqlalchemy-graphile" / "pgdata"


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) the embedded server in ``data_dir``; return a URL for it.

    Blocking: it may run ``initdb`` the first time. The server is stopped when this process
    exits. Raises :class:`ConfigurationError` when ``pgserver`` is not installed.
    """
    with warnings.catch_warnings():
        # platformdirs warns at import time when XDG_RUNTIME_DIR is unset; harmless here.
        warnings.simplefilter("ignore")
        try:
            from pgserver.postgres_server import get_server
        except ImportError:
            raise ConfigurationError(
                "no PostgreSQL server answers and the embedded one is not installed: "
                "pip install 'sqlalchemy-graphile[embedded]', or pass -c URL"
            ) from None
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode="stop")
    info = server.get_postmaster_info()
    url = URL.create(
        "postgresql",
        username="postgres",
        database="postgres",
        port=info.port or 5432,
        query={"host": str(info.socket_dir)},
    )
    return url.render_as_string(hide_password=False)
