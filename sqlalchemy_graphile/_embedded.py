"""Finding a PostgreSQL server for the demo, starting an embedded one if none answers.

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

from sqlalchemy import pool
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from ._urls import async_url, shown_url
from .errors import ConfigurationError

#: The server tried when no URL is given: a local PostgreSQL with trust authentication.
LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
#: Overrides the embedded server's data directory.
EMBEDDED_DIR_ENV_VAR = "SG_EMBEDDED_DIR"


@dataclass(frozen=True)
class FoundDatabase:
    """A database to use and a sentence saying where it came from."""

    url: str
    description: str


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


async def find_database(url: str | None) -> FoundDatabase:
    """``url`` if given; else :data:`LOCAL_URL` if it answers; else an embedded server.

    Raises :class:`ConfigurationError` when the embedded server is needed but ``pgserver``
    is not installed.
    """
    if url:
        return FoundDatabase(url, f"using {shown_url(url)}")
    if await answers(LOCAL_URL):
        return FoundDatabase(LOCAL_URL, f"using the local server at {LOCAL_URL}")
    data_dir = embedded_data_dir()
    embedded_url = await asyncio.to_thread(start_embedded, data_dir)
    return FoundDatabase(
        embedded_url,
        f"no server at {LOCAL_URL}; started an embedded PostgreSQL in {data_dir}",
    )


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
