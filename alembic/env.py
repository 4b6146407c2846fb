"""Alembic environment for installing the job queue schema on its own.

The database comes from ``$DATABASE_URL`` (or ``sqlalchemy.url`` in ``alembic.ini``); a plain
``postgresql://`` URL works with whichever driver is installed. The Alembic version table is
``alembic_version_<schema>`` in the default schema, so it never collides with an
application's own ``alembic_version``. Concurrent runs are serialised by an advisory lock.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from sqlalchemy_graphile._urls import async_url, database_url_from_env, prefers_async, sync_url
from sqlalchemy_graphile.errors import ConfigurationError
from sqlalchemy_graphile.migrations import alembic_schema
from sqlalchemy_graphile.models import metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

SCHEMA = alembic_schema()
VERSION_TABLE = f"alembic_version_{SCHEMA}"
if len(VERSION_TABLE) > 63:
    raise ConfigurationError(
        f"schema name {SCHEMA!r} is too long for the standalone Alembic setup "
        "(its version table name would exceed 63 characters)"
    )


def _database_url() -> str:
    return config.get_main_option("sqlalchemy.url") or database_url_from_env()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
    )
    with context.begin_transaction():
        connection.execute(
            text("select pg_advisory_xact_lock(hashtext('sqlalchemy_graphile alembic'))")
        )
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(async_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=sync_url(_database_url()).render_as_string(hide_password=False),
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _database_url()
    if prefers_async(url):
        asyncio.run(_run_async(url))
        return
    from sqlalchemy import create_engine

    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
