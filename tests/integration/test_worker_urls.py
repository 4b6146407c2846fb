"""A worker hands its URL to asyncpg, which reads it as libpq reads a connection URI: the
query options, several hosts, a Unix socket and percent-encoded names reach the server.

Each test runs one job, which records the worker's connections as the server sees them
(``pg_stat_activity`` and ``pg_stat_ssl``, read on a connection of its own).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from typing import ClassVar, Literal

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from sqlalchemy_graphile import DatabaseConnectionError, Task, Worker, WorkerContext

#: What each ReportConnections job saw: (application_name, ssl, usename) per connection.
SEEN: list[set[tuple[str, bool, str]]] = []


class ReportConnections(Task):
    IDENTIFIER: ClassVar[str] = "report_connections"
    observer_url: str

    async def run(self, ctx: WorkerContext) -> None:
        SEEN.append(await asyncio.to_thread(_connections, self.observer_url))


def _connections(url: str) -> set[tuple[str, bool, str]]:
    with psycopg.connect(url) as observer:
        rows = observer.execute(
            "select a.application_name, coalesce(s.ssl, false), a.usename"
            " from pg_stat_activity a left join pg_stat_ssl s using (pid)"
            " where a.datname = current_database() and a.pid <> pg_backend_pid()"
        ).fetchall()
    return {(str(name), bool(ssl), str(user)) for name, ssl, user in rows}


async def run_one_job(database: object, db: psycopg.Connection, db_url: str) -> set[str]:
    """Run one job on a worker for ``database``; the application names the job saw."""
    SEEN.clear()
    db.execute(
        "select graphile_worker.add_job('report_connections',"
        " json_build_object('observer_url', %s::text))",
        (db_url,),
    )
    worker = Worker(database, tasks=[ReportConnections], handle_signals=False)  # type: ignore[arg-type]
    await worker.run_once()
    assert len(SEEN) == 1, "the job ran once"
    return {name for name, _ssl, _user in SEEN[0]}


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize(
    "scheme",
    ["postgresql", "postgres", "postgresql+asyncpg", "postgresql+psycopg", "postgresql+psycopg2"],
)
async def test_query_options_reach_the_server(
    scheme: str, db: psycopg.Connection, db_url: str
) -> None:
    url = db_url.replace("postgresql://", f"{scheme}://", 1)
    names = await run_one_job(f"{url}?application_name=url-test&sslmode=disable", db, db_url)
    assert "url-test" in names
    assert all(not ssl for name, ssl, _user in SEEN[0] if name == "url-test")


async def test_sslmode_is_the_drivers_to_apply(db: psycopg.Connection, db_url: str) -> None:
    server_ssl = db.execute("show ssl").fetchone()
    if server_ssl is not None and server_ssl[0] == "on":
        pytest.skip("the server accepts SSL: sslmode=require would succeed")
    worker = Worker(f"{db_url}?sslmode=require", tasks=[ReportConnections], handle_signals=False)
    with pytest.raises(DatabaseConnectionError, match="cannot connect to the database at"):
        await worker.run_once()


async def test_an_unknown_setting_is_refused_by_the_server_at_start(db_url: str) -> None:
    worker = Worker(f"{db_url}?no_such_setting=1", tasks=[ReportConnections], handle_signals=False)
    with pytest.raises(DatabaseConnectionError, match="no_such_setting"):
        await worker.run_once()


async def test_several_hosts_are_tried_in_turn(db: psycopg.Connection, db_url: str) -> None:
    url = make_url(db_url)
    dead = f"127.0.0.1:{unused_port()}"
    live = f"{url.host}:{url.port}"
    libpq = f"postgresql://{url.username}@{dead},{live}/{url.database}"
    sqlalchemy = f"postgresql+asyncpg://{url.username}@/{url.database}?host={dead}&host={live}"
    for given in (libpq, sqlalchemy):
        separator = "&" if "?" in given else "?"
        assert "hosts" in await run_one_job(f"{given}{separator}application_name=hosts", db, db_url)


async def test_a_unix_socket_directory(db: psycopg.Connection, db_url: str) -> None:
    directory = "/var/run/postgresql"
    url = make_url(db_url)
    if not _has_socket(f"{directory}/.s.PGSQL.{url.port}"):
        pytest.skip(f"the server has no socket in {directory}")
    given = f"postgresql://{url.username}@/{url.database}?host={directory}&application_name=sock"
    assert "sock" in await run_one_job(given, db, db_url)
    # SQLAlchemy writes such a URL's port before the path: postgresql://user@:5432/db?host=...
    as_sqlalchemy = URL.create(
        "postgresql",
        username=url.username,
        port=url.port,
        database=url.database,
        query={"host": directory, "application_name": "sock2"},
    )
    assert "@:" in as_sqlalchemy.render_as_string(hide_password=False)
    assert "sock2" in await run_one_job(as_sqlalchemy, db, db_url)


def _has_socket(path: str) -> bool:
    return os.path.exists(path)


@pytest.fixture
def odd_role(db: psycopg.Connection) -> Iterator[tuple[str, str]]:
    """A login role whose name and password hold every character a URL must encode."""
    name, password = f"a@b:c/d?e%f {os.getpid()}", "p@ss:w/r?d%#"
    db.execute(f"create role \"{name}\" login superuser password '{password}'")
    try:
        yield name, password
    finally:
        db.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where usename = %s", (name,)
        )
        db.execute(f'drop role "{name}"')


async def test_percent_encoded_names(
    odd_role: tuple[str, str], db: psycopg.Connection, db_url: str
) -> None:
    name, password = odd_role
    url = make_url(db_url).set(username=name, password=password)
    given = url.render_as_string(hide_password=False)
    assert "%40" in given
    assert "%3F" in given
    await run_one_job(given, db, db_url)
    assert name in {user for _name, _ssl, user in SEEN[0]}


async def test_engines_of_any_driver_give_their_url(db: psycopg.Connection, db_url: str) -> None:
    named = f"{db_url}?application_name=from-engine"
    async_engine = create_async_engine(named.replace("postgresql://", "postgresql+asyncpg://", 1))
    sync_engine = create_engine(named.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        assert "from-engine" in await run_one_job(async_engine, db, db_url)
        assert "from-engine" in await run_one_job(sync_engine.url, db, db_url)
    finally:
        await async_engine.dispose()
        sync_engine.dispose()


@pytest.mark.parametrize("pooler", [None, "transaction"])
async def test_the_engine_for_adds_in_tasks_connects_like_the_worker(
    pooler: Literal["transaction"] | None, db_url: str
) -> None:
    url = f"{db_url}?application_name=adds&prepared_statement_cache_size=0"
    worker = Worker(url, tasks=[ReportConnections], pooler=pooler, handle_signals=False)
    engine = worker._database.make_engine(pooler)
    try:
        async with engine.connect() as connection:
            name = await connection.scalar(text("select current_setting('application_name')"))
        assert name == "adds"
    finally:
        await engine.dispose()
