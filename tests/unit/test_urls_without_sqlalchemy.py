"""Reading a URL string for asyncpg without SQLAlchemy, and editing its query.

asyncpg reads the URL itself (``dsn=``): :func:`read_url` drops only what SQLAlchemy adds,
and refuses before any connection what asyncpg would fail on. What asyncpg then makes of
each URL is checked against a real server in tests/integration/test_worker_urls.py.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
from sqlalchemy.engine import make_url

from sqlalchemy_graphile import ConfigurationError, Task, Worker, WorkerContext
from sqlalchemy_graphile._urls import read_url, shown_url, with_query_option


class Noop(Task):
    IDENTIFIER: ClassVar[str] = "noop"

    async def run(self, ctx: WorkerContext) -> None:
        return None


@pytest.mark.parametrize(
    "scheme",
    ["postgresql", "postgres", "postgresql+asyncpg", "postgresql+psycopg", "postgresql+psycopg2"],
)
def test_the_driver_suffix_and_alias_are_dropped(scheme: str) -> None:
    read = read_url(f"{scheme}://app:secret@db.example:5433/app?sslmode=disable")
    assert read.dsn == "postgresql://app:secret@db.example:5433/app?sslmode=disable"
    assert read.address() == "db.example:5433/app"


@pytest.mark.parametrize(
    ("url", "dsn", "address"),
    [
        # The host list of libpq, IPv6 in brackets, the port defaulting per host.
        (
            "postgresql://app@h1:5432,[::1]:5433,h3/app?target_session_attrs=read-write",
            "postgresql://app@h1:5432,[::1]:5433,h3/app?target_session_attrs=read-write",
            "h1:5432,[::1]:5433,h3:5432/app",
        ),
        # SQLAlchemy's spelling of several hosts: one host option each, joined for asyncpg.
        (
            "postgresql+asyncpg://app@/app?host=h1:5432&host=h2:5433",
            "postgresql://app@/app?host=h1%3A5432%2Ch2%3A5433",
            "h1:5432,h2:5433/app",
        ),
        (
            "postgresql://app@/app?host=h1,h2&port=5432,5433",
            "postgresql://app@/app?host=h1%2Ch2&port=5432%2C5433",
            "h1:5432,h2:5433/app",
        ),
        # A Unix socket's directory.
        (
            "postgresql://app@/app?host=/var/run/postgresql",
            "postgresql://app@/app?host=%2Fvar%2Frun%2Fpostgresql",
            "/var/run/postgresql:5432/app",
        ),
        # Percent-encoded names stay encoded for asyncpg, which decodes them.
        (
            "postgres://a%40b%3Ac:s%40c%2Fr%3Fet@db.example/my%20db",
            "postgresql://a%40b%3Ac:s%40c%2Fr%3Fet@db.example/my%20db",
            "db.example:5432/my db",
        ),
        # SQLAlchemy's own options are kept out of the dsn; libpq's options go through.
        (
            "postgresql://app@db/app?prepared_statement_cache_size=0&options=-c+jit%3Doff",
            "postgresql://app@db/app?options=-c+jit%3Doff",
            "db:5432/app",
        ),
        # SQLAlchemy writes the port of a host given in the query before the path.
        (
            "postgresql+psycopg://app@:5433/app?host=/tmp",
            "postgresql://app@/app?host=%2Ftmp&port=5433",
            "/tmp:5433/app",
        ),
        ("postgresql://:5433/app", "postgresql:///app?port=5433", "localhost:5433/app"),
        ("postgresql:///app", "postgresql:///app", "localhost:5432/app"),
    ],
)
def test_what_asyncpg_is_given(
    url: str, dsn: str, address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER"):
        monkeypatch.delenv(name, raising=False)
    read = read_url(url)
    assert (read.dsn, read.address()) == (dsn, address)


def test_the_sqlalchemy_options_are_kept_for_an_engine() -> None:
    read = read_url("postgresql://db/app?prepared_statement_cache_size=0&application_name=x")
    assert read.sqlalchemy_options == {"prepared_statement_cache_size": "0"}
    assert read.options == {"application_name": "x"}


def test_the_address_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHOST", "envhost")
    monkeypatch.setenv("PGPORT", "6543")
    monkeypatch.setenv("PGDATABASE", "envdb")
    assert read_url("postgresql://").address() == "envhost:6543/envdb"
    assert read_url("postgresql://h/d").address() == "h:6543/d"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "not a database URL"),
        ("host=db dbname=app", "key=value connection strings are not read"),
        ("mysql://app@db/app", "only PostgreSQL is supported, not 'mysql'"),
        ("sqlite+pysqlite:///x.db", "only PostgreSQL is supported"),
        ("postgresql://app@db.example:notaport/app", "port 'notaport'"),
        ("postgresql://app@h1,,h2/app", "empty host"),
        ("postgresql://app@[::1/app", "Invalid IPv6 URL"),
        ("postgresql://app@[::1]x/app", "IPv6 host"),
        ("postgresql://app@/app?host=h1,h2&port=1,2,3", "3 ports for 2 hosts"),
        ("postgresql://app@/app?port=x", "port option 'x'"),
        ("postgresql://app@db/app?sslmode", "bad query field"),
        ("postgresql://app@db/app?options=a&options=b", "'options' more than once"),
        ("postgresql://app:p@ss@db/app", "write an '@' in the user name or password as %40"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("[", r"\[").replace("?", r"\?")):
        read_url(url)
    with pytest.raises(ConfigurationError):
        Worker(url, tasks=[Noop])


def test_the_message_hides_the_password() -> None:
    with pytest.raises(ConfigurationError) as raised:
        read_url("postgresql://app:p@ss@db/app")
    assert "ss" not in str(raised.value).replace("password", "")


@pytest.mark.parametrize(
    ("option", "named"),
    [
        ("command_timeout=7", "command_timeout"),
        ("timeout=3", "timeout"),
        ("ssl=require", "ssl"),
        ("connect_timeout=10", "connect_timeout"),
        ("keepalives=1", "keepalives"),
    ],
)
def test_options_asyncpg_does_not_read_from_a_url_are_refused(option: str, named: str) -> None:
    with pytest.raises(ConfigurationError, match=f"asyncpg does not read from a URL: {named}"):
        Worker(f"postgresql://app@db/app?{option}", tasks=[Noop])


def test_options_the_worker_sets_itself_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="prepared_statements=False"):
        Worker("postgresql://app@db/app?statement_cache_size=0", tasks=[Noop])


def test_a_sqlalchemy_url_is_read_like_its_string() -> None:
    url = make_url("postgresql+psycopg://a@b:p:w/d@db.example:5433/app")
    url = url.set(query={"application_name": "billing", "sslmode": "disable"})
    worker = Worker(url, tasks=[Noop])
    assert worker._database.url == read_url(url.render_as_string(hide_password=False))
    assert worker._database.url.dsn == (
        "postgresql://a%40b:p%3Aw%2Fd@db.example:5433/app?application_name=billing&sslmode=disable"
    )
    assert worker._database.application_name == "billing"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+asyncpg://app:secret@db/app", "postgresql+asyncpg://app:***@db/app"),
        ("postgresql://app@db/app?password=secret&x=1", "postgresql://app@db/app?password=***&x=1"),
        ("postgresql://app:p@ss@db/app", "postgresql://app:***@db/app"),
        ("postgresql://h1,h2/app", "postgresql://h1,h2/app"),
        ("host=db password=secret", "the given database"),
    ],
)
def test_shown_urls_hide_the_password(url: str, shown: str) -> None:
    assert shown_url(url) == shown


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://h/db", "postgresql://h/db?application_name=w+1"),
        (
            "postgresql://u:p%3Fx@h/db?sslmode=disable&application_name=old&search_path=",
            "postgresql://u:p%3Fx@h/db?sslmode=disable&search_path=&application_name=w+1",
        ),
        ("postgresql://", "postgresql://?application_name=w+1"),
    ],
)
def test_with_query_option_replaces_the_option(url: str, expected: str) -> None:
    assert with_query_option(url, "application_name", "w 1") == expected
    assert Worker(expected, tasks=[Noop])._database.application_name == "w 1"
