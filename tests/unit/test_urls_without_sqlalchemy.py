"""Reading a URL string into asyncpg's options without SQLAlchemy, and editing its query.

:func:`asyncpg_options` must give exactly what SQLAlchemy's asyncpg dialect makes of the same
URL (the worker used that before), or ``None`` to leave the URL to SQLAlchemy.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

from sqlalchemy_graphile import ConfigurationError, Task, Worker, WorkerContext
from sqlalchemy_graphile._urls import async_url, asyncpg_options, with_query_option


class Noop(Task):
    IDENTIFIER: ClassVar[str] = "noop"

    async def run(self, ctx: WorkerContext) -> None:
        return None


READ_WITHOUT_SQLALCHEMY = [
    "postgresql://",
    "postgresql://db.example",
    "postgresql://app@db.example/app",
    "postgresql://app:secret@db.example:5433/app",
    "postgres://app:s%40c%2Fr%3Fet@db.example/my%20db",
    "postgresql+asyncpg://app:pa?ss:w/rd@db.example/app",
    "postgresql+psycopg://app@[::1]:5432/app",
    "postgresql://app@db.example/app?sslmode=require&application_name=billing",
    "postgresql://app@db.example/app?command_timeout=7&empty=",
    "postgresql://:secret@db.example:0/",
    "postgresql:///app",
]
LEFT_TO_SQLALCHEMY = [
    "postgresql://app@/app?host=/var/run/postgresql",
    "postgresql://app@/app?host=h1:5432&host=h2:5433",
    "postgresql://app@/app?host=h1,h2&port=5432,5433",
    "postgresql://app@db.example/app?prepared_statement_cache_size=0",
    "postgresql://app@db.example/app?options=a&options=b",
    "postgresql://app@db.example:notaport/app",
    "not a url",
]


def dialect_options(url: str) -> dict[str, Any]:
    dialect_class: Any = PGDialect_asyncpg
    dialect = dialect_class()
    _args, options = dialect.create_connect_args(async_url(url))
    return dict(options)


@pytest.mark.parametrize("url", READ_WITHOUT_SQLALCHEMY)
def test_options_match_sqlalchemys_reading(url: str) -> None:
    assert asyncpg_options(url) == dialect_options(url)


@pytest.mark.parametrize("url", LEFT_TO_SQLALCHEMY)
def test_unusual_urls_are_left_to_sqlalchemy(url: str) -> None:
    assert asyncpg_options(url) is None


def test_several_hosts_still_reach_the_worker() -> None:
    worker = Worker("postgresql://app@/app?host=h1:5432&host=h2:5433", tasks=[Noop])
    assert worker._database.connect_kwargs["host"] == ["h1", "h2"]
    assert worker._database.connect_kwargs["port"] == [5432, 5433]


@pytest.mark.parametrize("url", ["mysql://app@db/app", "sqlite+pysqlite:///x.db"])
def test_other_databases_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="only PostgreSQL is supported"):
        asyncpg_options(url)


def test_a_malformed_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not a database URL"):
        Worker("not a url", tasks=[Noop])


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://h/db", "postgresql://h/db?application_name=w+1"),
        (
            "postgresql://u:p?x@h/db?timeout=3&application_name=old&ssl=",
            "postgresql://u:p?x@h/db?timeout=3&ssl=&application_name=w+1",
        ),
        ("postgresql://", "postgresql://?application_name=w+1"),
    ],
)
def test_with_query_option_replaces_the_option(url: str, expected: str) -> None:
    assert with_query_option(url, "application_name", "w 1") == expected
    assert Worker(expected, tasks=[Noop])._database.application_name == "w 1"
