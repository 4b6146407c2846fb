"""Installing, adopting, checking and removing the schema with the installer functions.

The installer joins the caller's transaction; Alembic, ``WorkerUtils.migrate()`` and the CLI
all go through it. Alembic itself is covered in ``test_alembic.py``.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, Engine, create_engine, event, pool, text

from sqlalchemy_graphile import (
    InvalidIdentifierError,
    SchemaError,
    SchemaNotInstalledError,
    SchemaTooNewError,
    SchemaTooOldError,
    quote_identifier,
    validate_schema_name,
)
from sqlalchemy_graphile.migrations import (
    LedgerState,
    check_compatible,
    install,
    read_ledger,
    uninstall,
    uninstall_recovery,
)
from tests._catalog import describe_schema
from tests._rust_revision_20 import rust_revision_20
from tests._schema_names import HOSTILE_SCHEMA_NAMES
from tests.integration.test_catalog import EXPECTED

S = "graphile_worker"


def make_engine(url: str) -> Engine:
    return create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=pool.NullPool
    )


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a database where the schema is already installed."""
    created = make_engine(db_url)
    yield created
    created.dispose()


@pytest.fixture
def empty_engine(empty_db_url: str) -> Iterator[Engine]:
    created = make_engine(empty_db_url)
    yield created
    created.dispose()


def run_install(engine: Engine, schema: str = S) -> bool:
    with engine.begin() as connection:
        return install(connection, schema)


def ledger_rows(conn: psycopg.Connection, schema: str = S) -> list[tuple[Any, ...]]:
    """Every ledger row, timestamps included."""
    quoted = quote_identifier(schema)
    return [tuple(row) for row in conn.execute(f"select * from {quoted}.migrations order by id")]


def table_contents(conn: psycopg.Connection, schema: str = S) -> dict[str, list[tuple[Any, ...]]]:
    quoted = quote_identifier(schema)
    tables = ["_private_jobs", "_private_job_queues", "_private_tasks", "_private_known_crontabs"]
    return {
        table: [
            tuple(row)
            for row in conn.execute(f"select to_jsonb(t)::text from {quoted}.{table} t order by 1")
        ]
        for table in tables
    }


def schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    row = conn.execute("select count(*) from pg_namespace where nspname = %s", (schema,)).fetchone()
    return row == (1,)


def add_some_jobs(conn: psycopg.Connection, schema: str = S) -> None:
    quoted = quote_identifier(schema)
    conn.execute(f"select {quoted}.add_job('plain', '{{\"n\": 1}}')")
    conn.execute(f"select {quoted}.add_job('queued', queue_name := 'q', job_key := 'k')")
    conn.execute(
        f"select {quoted}.add_job('later', run_at := now() + interval '1 day', flags := '{{f}}')"
    )
    conn.execute(f"insert into {quoted}._private_known_crontabs values ('cron', now(), null)")


# --- fresh installs -----------------------------------------------------------------------


def test_install_on_an_empty_database(empty_engine: Engine, empty_db_url: str) -> None:
    assert run_install(empty_engine) is True
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert describe_schema(conn, S) == EXPECTED
        conn.execute(f"select {S}.add_job('assert_jobs_work')")
        assert conn.execute(f"select count(*) from {S}.jobs").fetchone() == (1,)


def test_installing_again_does_no_harm(empty_engine: Engine, empty_db_url: str) -> None:
    assert run_install(empty_engine) is True
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(f"select {S}.add_job('assert_jobs_work')")
        ledger = ledger_rows(conn)
        contents = table_contents(conn)
        for _ in range(3):
            assert run_install(empty_engine) is False
        assert ledger_rows(conn) == ledger
        assert table_contents(conn) == contents
        assert len(contents["_private_jobs"]) == 1


def test_install_joins_the_callers_transaction(empty_engine: Engine, empty_db_url: str) -> None:
    with empty_engine.connect() as connection:
        assert install(connection, S) is True
        connection.rollback()
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert not schema_exists(conn, S)


def test_install_notifies_worker_migrate_on_commit(empty_engine: Engine, empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as listener:
        listener.execute('listen "worker:migrate"')

        def received() -> list[str]:
            sentinel = f"sentinel-{uuid.uuid4()}"
            with empty_engine.begin() as connection:
                connection.execute(text("select pg_notify('worker:migrate', :p)"), {"p": sentinel})
            payloads: list[str] = []
            for notification in listener.notifies(timeout=10):
                if notification.payload == sentinel:
                    return payloads
                payloads.append(notification.payload)
            raise AssertionError(f"no sentinel within 10 s; got {payloads!r}")

        run_install(empty_engine)
        assert [json.loads(p) for p in received()] == [{"migrationNumber": 19, "breaking": True}]
        run_install(empty_engine)  # adopting changes nothing, so it tells nobody
        assert received() == []


def test_installs_under_several_schemas_side_by_side(
    empty_engine: Engine, empty_db_url: str
) -> None:
    for schema in ("graphile_worker", "my_jobs", "Jobs$Q"):
        assert run_install(empty_engine, schema) is True
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        for schema in ("graphile_worker", "my_jobs", "Jobs$Q"):
            assert describe_schema(conn, schema) == EXPECTED
        conn.execute("select \"Jobs$Q\".add_job('only_here')")
        assert conn.execute(f"select count(*) from {S}._private_jobs").fetchone() == (0,)
        assert conn.execute('select count(*) from "Jobs$Q"._private_jobs').fetchone() == (1,)


def test_concurrent_installs_from_threads(empty_engine: Engine, empty_db_url: str) -> None:
    installers = 5
    barrier = threading.Barrier(installers)

    def installer() -> bool:
        with empty_engine.connect() as connection:
            barrier.wait(timeout=30)
            with connection.begin():
                return install(connection, S)

    with ThreadPoolExecutor(installers) as executor:
        futures = [executor.submit(installer) for _ in range(installers)]
        results = [future.result(timeout=90) for future in futures]
    assert sorted(results) == [False] * (installers - 1) + [True]
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert describe_schema(conn, S) == EXPECTED
        conn.execute(f"select {S}.add_job('assert_jobs_work')")


# --- adopting and checking existing schemas ----------------------------------------------


def test_adopts_an_installed_schema_with_jobs(engine: Engine, db: psycopg.Connection) -> None:
    add_some_jobs(db)
    ledger = ledger_rows(db)
    contents = table_contents(db)
    assert run_install(engine) is False
    assert ledger_rows(db) == ledger
    assert table_contents(db) == contents
    assert len(contents["_private_jobs"]) == 3


def test_ledger_state_of_a_fresh_install(engine: Engine) -> None:
    with engine.connect() as connection:
        assert read_ledger(connection, S) == LedgerState(True, True, 20, 19)
        assert read_ledger(connection, "absent") == LedgerState(exists=False)


def test_missing_schema_is_reported(empty_engine: Engine) -> None:
    with empty_engine.connect() as connection:
        state = read_ledger(connection, S)
    with pytest.raises(SchemaNotInstalledError, match="alembic upgrade head"):
        check_compatible(state, S)


def function_bodies(conn: psycopg.Connection, schema: str = S) -> list[tuple[str, str]]:
    rows = conn.execute(
        "select p.oid::regprocedure::text, p.prosrc from pg_proc p"
        " join pg_namespace n on n.oid = p.pronamespace where n.nspname = %s order by 1",
        (schema,),
    )
    return [(row[0], row[1]) for row in rows]


def test_a_schema_the_rust_port_brought_to_20_is_adopted_unchanged(
    engine: Engine, db: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    with engine.begin() as connection:
        uninstall_recovery(connection, S)
    db.execute(rust_revision_20())
    db.execute(f"select {S}.worker_heartbeat('graphile_worker_0123456789abcdef01')")
    ledger, bodies = ledger_rows(db), function_bodies(db)
    workers = db.execute(f"select * from {S}._private_workers").fetchall()
    with caplog.at_level(logging.WARNING, logger="sqlalchemy_graphile.migrations"):
        assert run_install(engine) is False
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert ledger_rows(db) == ledger
    assert function_bodies(db) == bodies
    assert db.execute(f"select * from {S}._private_workers").fetchall() == workers


def test_revision_20_is_added_to_a_schema_at_19(engine: Engine, db: psycopg.Connection) -> None:
    with engine.begin() as connection:
        uninstall_recovery(connection, S)
    add_some_jobs(db)
    contents = table_contents(db)
    assert run_install(engine) is True
    assert describe_schema(db, S) == EXPECTED
    assert table_contents(db) == contents
    assert run_install(engine) is False


def test_a_ledger_at_20_without_its_objects_is_refused(
    engine: Engine, db: psycopg.Connection
) -> None:
    with engine.begin() as connection:
        uninstall_recovery(connection, S)
    db.execute(f"insert into {S}.migrations (id, breaking) values (20, false)")
    with pytest.raises(SchemaError, match=r"records revision 20 .* missing: .*_private_workers"):
        run_install(engine)


def test_newer_non_breaking_revision_only_warns(
    engine: Engine, db: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    db.execute(f"insert into {S}.migrations (id, breaking) values (21, false)")
    ledger = ledger_rows(db)
    with caplog.at_level(logging.WARNING, logger="sqlalchemy_graphile.migrations"):
        assert run_install(engine) is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "revision 21, newer than 20" in warnings[0].getMessage()
    assert "not marked as breaking" in warnings[0].getMessage()
    assert ledger_rows(db) == ledger


def test_newer_breaking_revision_is_refused(engine: Engine, db: psycopg.Connection) -> None:
    db.execute(f"insert into {S}.migrations (id, breaking) values (999999, true)")
    ledger = ledger_rows(db)
    with pytest.raises(SchemaTooNewError) as caught:
        run_install(engine)
    error = caught.value
    message = str(error)
    assert "999999" in message
    assert "up to 19" in message
    assert "Upgrade sqlalchemy-graphile" in message
    assert (error.latest_breaking, error.supported, error.exit_code) == (999999, 19, 57)
    assert ledger_rows(db) == ledger


def test_newer_non_breaking_revision_far_ahead_only_warns(
    engine: Engine, db: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    db.execute(f"insert into {S}.migrations (id, breaking) values (999999, false)")
    with caplog.at_level(logging.WARNING, logger="sqlalchemy_graphile.migrations"):
        assert run_install(engine) is False
    assert "revision 999999" in caplog.text


def test_ledger_below_19_is_refused(engine: Engine, db: psycopg.Connection) -> None:
    db.execute(f"delete from {S}.migrations where id > 18")
    with pytest.raises(SchemaTooOldError) as caught:
        run_install(engine)
    message = str(caught.value)
    assert "revision 18, older than 19" in message
    assert "graphile-worker@0.17 --schema-only" in message


def test_legacy_ledger_without_breaking_column_is_refused(
    empty_engine: Engine, empty_db_url: str
) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(f"create schema {S}")
        conn.execute(
            f"create table {S}.migrations"
            " (id integer primary key, ts timestamptz default now() not null)"
        )
        conn.execute(f"insert into {S}.migrations (id) select generate_series(1, 19)")
    with pytest.raises(SchemaTooOldError, match=r"graphile-worker@0\.17"):
        run_install(empty_engine)
    with empty_engine.connect() as connection:
        assert read_ledger(connection, S) == LedgerState(True, False, 19, None)


# --- uninstall ----------------------------------------------------------------------------


def test_uninstall_removes_every_object_and_the_schema(
    engine: Engine, db: psycopg.Connection
) -> None:
    add_some_jobs(db)
    with engine.begin() as connection:
        uninstall(connection, S)
    assert not schema_exists(db, S)


def test_uninstall_keeps_a_schema_that_holds_other_objects(
    engine: Engine, db: psycopg.Connection
) -> None:
    db.execute(f"create table {S}.app_notes (id integer)")
    with engine.begin() as connection:
        uninstall(connection, S)
    rows = db.execute(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = %s",
        (S,),
    ).fetchall()
    assert rows == [("app_notes",)]


# --- schema names -------------------------------------------------------------------------

ENTRY_POINTS: dict[str, Callable[[Connection, str], object]] = {
    "install": install,
    "uninstall": uninstall,
    "read_ledger": read_ledger,
}


@pytest.mark.parametrize("name", HOSTILE_SCHEMA_NAMES)
def test_validate_schema_name_rejects_hostile_names(name: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        validate_schema_name(name)


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_hostile_names_are_rejected_before_any_sql(
    empty_engine: Engine, empty_db_url: str, entry_point: str
) -> None:
    statements: list[str] = []
    with empty_engine.connect() as connection:

        @event.listens_for(connection, "before_cursor_execute")
        def record(*args: Any) -> None:
            statements.append(args[2])

        for name in HOSTILE_SCHEMA_NAMES:
            with pytest.raises(InvalidIdentifierError):
                ENTRY_POINTS[entry_point](connection, name)
        assert statements == []
        connection.execute(text("select 'the recorder works'"))
    assert statements == ["select 'the recorder works'"]
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        rows = conn.execute(
            "select nspname from pg_namespace"
            " where nspname not like 'pg\\_%%' and nspname <> 'information_schema'"
        ).fetchall()
    assert rows == [("public",)]


# Each accepted name with what PostgreSQL's format('%I') makes of it.
QUOTING: dict[str, str] = {
    "graphile_worker": "graphile_worker",
    "my_jobs": "my_jobs",
    "a" * 63: "a" * 63,
    "Jobs$Q": '"Jobs$Q"',
    "UPPER": '"UPPER"',
    "a$b": '"a$b"',
    "select": '"select"',
    "user": '"user"',
}


@pytest.mark.parametrize(("name", "formatted"), QUOTING.items())
def test_quote_identifier_matches_postgres(empty_db_url: str, name: str, formatted: str) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        row = conn.execute("select format('%%I', %s::text)", (name,)).fetchone()
        assert row == (formatted,)
        if formatted != name:  # PostgreSQL needs quotes too: ours must be identical
            assert quote_identifier(name) == formatted
        else:  # we always quote; the quoted form must name exactly this schema
            assert quote_identifier(name) == f'"{name}"'
        conn.execute(f"create schema {quote_identifier(name)}")
        assert schema_exists(conn, name)
        conn.execute(f"drop schema {quote_identifier(name)}")
