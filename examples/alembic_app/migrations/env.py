"""Alembic environment of the example application.

Autogenerate compares the application's models with every schema in the database
(``include_schemas=True``). sqlalchemy-graphile's ``include_object`` keeps the job queue
schema out of that comparison, so a generated revision never proposes to drop or alter it;
the application adds its own rule on top (it ignores ``tmp_*`` scratch tables). Online runs
hold an advisory lock, so several processes may run ``alembic upgrade head`` at once.
"""

from __future__ import annotations

import os
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import create_engine, pool, text
from userapp.models import Base

from sqlalchemy_graphile.migrations import include_object as graphile_include_object

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """The job queue schema is sqlalchemy-graphile's; ``tmp_*`` tables are nobody's."""
    if not graphile_include_object(obj, name, type_, reflected, compare_to):
        return False
    return not (type_ == "table" and name is not None and name.startswith("tmp_"))


def database_url() -> str:
    return os.environ.get("DATABASE_URL") or config.get_main_option("sqlalchemy.url") or ""


def run_migrations_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=Base.metadata,
        include_object=include_object,
        include_schemas=True,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            include_object=include_object,
            include_schemas=True,
        )
        with context.begin_transaction():
            # One migrator at a time: processes that start together wait here, then find
            # the database at head and do nothing.
            connection.execute(text("select pg_advisory_xact_lock(hashtext('alembic_app'))"))
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
