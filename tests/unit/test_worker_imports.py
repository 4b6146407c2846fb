"""A worker given a URL string starts without importing SQLAlchemy or Alembic.

Each check runs in a fresh interpreter, since this test process has imported both.
"""

from __future__ import annotations

from .._imports import loaded_after


def test_a_worker_from_a_url_string_does_not_import_sqlalchemy() -> None:
    code = """
from typing import ClassVar
from sqlalchemy_graphile import Task, Worker

class Noop(Task):
    IDENTIFIER: ClassVar[str] = "noop"
    async def run(self, ctx): return None

for url in [
    "postgresql://app:s3cret@db.example:5433/app?application_name=w",
    "postgresql+asyncpg://app@h1:5432,h2:5433/app?target_session_attrs=read-write",
    "postgresql+psycopg://app@/app?host=h1:5432&host=h2:5433&sslmode=disable",
    "postgres://a%40b:p%3Aw@/app?host=/var/run/postgresql",
]:
    worker = Worker(url, tasks=[Noop])
    assert worker._database.address().startswith(("db.example:5433", "h1:5432,h2", "/var/run"))
try:
    Worker("postgresql://app@db:port/app", tasks=[Noop])
except ValueError as error:
    assert "is not a number" in str(error), error
else:
    raise AssertionError("a bad port was accepted")
"""
    assert loaded_after(code) == []


def test_the_schema_check_and_the_cli_entry_do_not_import_sqlalchemy() -> None:
    code = """
from sqlalchemy_graphile.cli import main
from sqlalchemy_graphile.cli._run import run, worker_url
from sqlalchemy_graphile.migrations import check_compatible
from sqlalchemy_graphile.worker._schema_check import check_schema
assert worker_url("postgresql://h/db", "w") == "postgresql://h/db?application_name=w"
"""
    assert loaded_after(code) == []


def test_the_sqlalchemy_parts_load_on_first_use() -> None:
    code = """
import sqlalchemy_graphile, sqlalchemy_graphile.migrations as migrations
assert callable(migrations.install) and callable(sqlalchemy_graphile.WorkerUtils)
"""
    assert "sqlalchemy.ext.asyncio" in loaded_after(code)


def test_an_unknown_migrations_attribute_is_an_attribute_error() -> None:
    import sqlalchemy_graphile.migrations as migrations

    assert not hasattr(migrations, "no_such_function")
