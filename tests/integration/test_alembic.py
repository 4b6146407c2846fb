"""The standalone Alembic setup at the repository root (``alembic.ini`` + ``alembic/env.py``).

Alembic is driven through ``alembic.command`` with a ``Config`` pointing at the repository's
``alembic.ini``, and as a real ``alembic`` subprocess with ``DATABASE_URL`` set.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.config import Config

from sqlalchemy_graphile import (
    ConfigurationError,
    InvalidIdentifierError,
    SchemaTooNewError,
    SchemaTooOldError,
    quote_identifier,
)
from tests._catalog import describe_schema
from tests._rust_revision_20 import rust_revision_20
from tests._schema_names import HOSTILE_SCHEMA_NAMES
from tests.integration.test_catalog import EXPECTED, EXPECTED_REVISION_19

REPO = Path(__file__).resolve().parents[2]
S = "graphile_worker"
UNREACHABLE_URL = "postgresql://postgres@127.0.0.1:1/unreachable"
_SCRIPT = Path(sys.executable).with_name("alembic")
#: The ``alembic`` console script of this environment.
ALEMBIC = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "alembic"]


def alembic_config(url: str, *x_arguments: str) -> Config:
    """A Config for the repository's alembic.ini, as ``alembic -x ...`` would build it."""
    config = Config(str(REPO / "alembic.ini"), cmd_opts=argparse.Namespace(x=list(x_arguments)))
    config.set_main_option("sqlalchemy.url", url)
    config.attributes["configure_logger"] = False  # leave pytest's logging alone
    return config


def alembic_environment(url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k != "GRAPHILE_WORKER_SCHEMA"}
    environment.update({"DATABASE_URL": url, **(extra or {})})
    return environment


def alembic_cli(
    *args: str, url: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``alembic`` command from the repository root with ``DATABASE_URL=url``."""
    return subprocess.run(
        [*ALEMBIC, *args],
        cwd=REPO,
        env=alembic_environment(url, env),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def alembic_three_at_once(*args: str, url: str, cwd: Path = REPO) -> list[str]:
    """Run ``alembic *args`` in three processes at once, from ``cwd`` with
    ``DATABASE_URL=url``; assert that each one succeeds and return their stderr."""
    processes = [
        subprocess.Popen(
            [*ALEMBIC, *args],
            cwd=cwd,
            env=alembic_environment(url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=90) for process in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
    return [stderr for _, stderr in outputs]


def ledger(conn: psycopg.Connection, schema: str = S) -> list[tuple[Any, ...]]:
    quoted = quote_identifier(schema)
    return [tuple(r) for r in conn.execute(f"select * from {quoted}.migrations order by id")]


def version_rows(conn: psycopg.Connection, schema: str = S) -> list[str]:
    """The rows of Alembic's version table for ``schema`` ([] when there is no table)."""
    table = "public." + quote_identifier(f"alembic_version_{schema}")
    found = conn.execute("select to_regclass(%s) is not null", (table,)).fetchone()
    if found != (True,):
        return []
    return [row[0] for row in conn.execute(f"select version_num from {table}")]


def schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    row = conn.execute("select count(*) from pg_namespace where nspname = %s", (schema,)).fetchone()
    return row == (1,)


def jobs_snapshot(conn: psycopg.Connection, schema: str = S) -> list[str]:
    quoted = quote_identifier(schema)
    rows = conn.execute(f"select to_jsonb(j)::text from {quoted}._private_jobs j order by id")
    return [row[0] for row in rows]


def assert_installed(url: str, schema: str = S) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        assert describe_schema(conn, schema) == EXPECTED
        assert version_rows(conn, schema) == ["gw0020"]


# --- upgrade and downgrade ----------------------------------------------------------------


def test_upgrade_head_installs_the_schema(empty_db_url: str) -> None:
    command.upgrade(alembic_config(empty_db_url), "head")
    assert_installed(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(f"select {S}.add_job('assert_jobs_work')")
        command.upgrade(alembic_config(empty_db_url), "head")  # a second run does nothing
        assert len(jobs_snapshot(conn)) == 1


def test_upgrade_head_as_a_subprocess(empty_db_url: str) -> None:
    assert empty_db_url.startswith("postgresql://")
    result = alembic_cli("upgrade", "head", url=empty_db_url)
    assert result.returncode == 0, result.stderr
    assert "Running upgrade  -> gw0019" in result.stderr
    assert "installed schema 'graphile_worker' at revision 19" in result.stderr
    assert "Running upgrade gw0019 -> gw0020" in result.stderr
    assert "added the worker-recovery objects (revision 20)" in result.stderr
    assert_installed(empty_db_url)

    result = alembic_cli("current", url=empty_db_url)
    assert result.returncode == 0, result.stderr
    assert "gw0020 (head)" in result.stdout


def test_upgrade_downgrade_upgrade(empty_db_url: str) -> None:
    config = alembic_config(empty_db_url)
    command.upgrade(config, "head")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(f"select {S}.add_job('doomed')")
        command.downgrade(config, "base")
        assert not schema_exists(conn, S)
        assert version_rows(conn) == []
        command.upgrade(config, "head")
        assert describe_schema(conn, S) == EXPECTED
        assert jobs_snapshot(conn) == []
        assert version_rows(conn) == ["gw0020"]


def test_offline_mode_prints_an_install_script_that_works(empty_db_url: str) -> None:
    result = alembic_cli("upgrade", "head", "--sql", url=empty_db_url)
    assert result.returncode == 0, result.stderr
    script = result.stdout
    assert 'create table "graphile_worker"._private_jobs' in script
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert not schema_exists(conn, S)  # only printed, not run
        conn.execute(script.encode())
    assert_installed(empty_db_url)

    result = alembic_cli("downgrade", "gw0020:base", "--sql", url=empty_db_url)
    assert result.returncode == 0, result.stderr
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(result.stdout.encode())
        rows = conn.execute(
            "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = %s",
            (S,),
        ).fetchone()
        assert rows == (0,)
        assert version_rows(conn) == []


# --- schema names -------------------------------------------------------------------------


def test_x_schema_option(empty_db_url: str) -> None:
    config = alembic_config(empty_db_url, "schema=Jobs$Q")
    command.upgrade(config, "head")
    assert_installed(empty_db_url, "Jobs$Q")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert not schema_exists(conn, S)
        command.downgrade(config, "base")
        assert not schema_exists(conn, "Jobs$Q")


def test_x_schema_option_on_the_command_line(empty_db_url: str) -> None:
    result = alembic_cli("-x", "schema=my_jobs", "upgrade", "head", url=empty_db_url)
    assert result.returncode == 0, result.stderr
    assert_installed(empty_db_url, "my_jobs")


def test_schema_from_the_environment(empty_db_url: str) -> None:
    result = alembic_cli(
        "upgrade", "head", url=empty_db_url, env={"GRAPHILE_WORKER_SCHEMA": "env_jobs"}
    )
    assert result.returncode == 0, result.stderr
    assert_installed(empty_db_url, "env_jobs")


def test_x_schema_wins_over_the_environment(
    empty_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPHILE_WORKER_SCHEMA", "env_jobs")
    command.upgrade(alembic_config(empty_db_url, "schema=x_jobs"), "head")
    assert_installed(empty_db_url, "x_jobs")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert not schema_exists(conn, "env_jobs")


def test_several_schemas_have_separate_alembic_histories(empty_db_url: str) -> None:
    command.upgrade(alembic_config(empty_db_url), "head")
    command.upgrade(alembic_config(empty_db_url, "schema=second"), "head")
    assert_installed(empty_db_url)
    assert_installed(empty_db_url, "second")
    command.downgrade(alembic_config(empty_db_url, "schema=second"), "base")
    assert_installed(empty_db_url)


@pytest.mark.parametrize("name", HOSTILE_SCHEMA_NAMES)
def test_hostile_x_schema_is_rejected_before_connecting(name: str) -> None:
    # The database is unreachable: an error about the name proves nothing was sent.
    with pytest.raises(InvalidIdentifierError):
        command.upgrade(alembic_config(UNREACHABLE_URL, f"schema={name}"), "head")


def test_hostile_environment_schema_is_rejected_before_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GRAPHILE_WORKER_SCHEMA", 'x"; drop schema public; --')
    with pytest.raises(InvalidIdentifierError):
        command.upgrade(alembic_config(UNREACHABLE_URL), "head")


def test_schema_too_long_for_the_version_table_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="version table"):
        command.upgrade(alembic_config(UNREACHABLE_URL, "schema=" + "s" * 48), "head")


@pytest.mark.parametrize("name", ['x"; drop schema public; --', "a b", "", "pg_jobs"])
def test_hostile_x_schema_on_the_command_line(empty_db_url: str, name: str) -> None:
    result = alembic_cli("-x", f"schema={name}", "upgrade", "head", url=empty_db_url)
    assert result.returncode != 0
    assert "InvalidIdentifierError" in result.stderr
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        tables = conn.execute(
            "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'public'"
        ).fetchone()
        assert tables == (0,)  # not even Alembic's version table


# --- adoption and version checks ----------------------------------------------------------


def test_adopts_a_schema_installed_without_alembic(db_url: str, db: psycopg.Connection) -> None:
    db.execute(f"select {S}.add_job('one', '{{\"n\": 1}}')")
    db.execute(f"select {S}.add_job('two', queue_name := 'q', job_key := 'k')")
    db.execute(f"update {S}._private_jobs set locked_at = now(), locked_by = 'pool-x' where id = 1")
    jobs = jobs_snapshot(db)
    before = ledger(db)
    command.upgrade(alembic_config(db_url), "head")
    assert jobs_snapshot(db) == jobs
    assert ledger(db) == before
    assert version_rows(db) == ["gw0020"]


def test_rust_revision_20_is_adopted(db_url: str, db: psycopg.Connection) -> None:
    command.upgrade(alembic_config(db_url), "head")
    command.downgrade(alembic_config(db_url), "gw0019")
    assert version_rows(db) == ["gw0019"]
    assert describe_schema(db, S) == EXPECTED_REVISION_19
    db.execute(rust_revision_20())
    before = ledger(db)
    command.upgrade(alembic_config(db_url), "head")
    assert version_rows(db) == ["gw0020"]
    assert ledger(db) == before


def test_downgrade_to_gw0019_removes_exactly_revision_20(
    db_url: str, db: psycopg.Connection
) -> None:
    db.execute(f"select {S}.add_job('kept')")
    db.execute(f"select {S}.worker_heartbeat('pool-0123456789abcdef01')")
    jobs = jobs_snapshot(db)
    command.upgrade(alembic_config(db_url), "head")
    command.downgrade(alembic_config(db_url), "gw0019")
    assert describe_schema(db, S) == EXPECTED_REVISION_19
    assert jobs_snapshot(db) == jobs
    command.upgrade(alembic_config(db_url), "head")
    assert describe_schema(db, S) == EXPECTED
    assert jobs_snapshot(db) == jobs


def test_newer_breaking_revision_is_refused(db_url: str, db: psycopg.Connection) -> None:
    db.execute(f"insert into {S}.migrations (id, breaking) values (999999, true)")
    with pytest.raises(SchemaTooNewError, match="Upgrade sqlalchemy-graphile"):
        command.upgrade(alembic_config(db_url), "head")
    assert version_rows(db) == []

    result = alembic_cli("upgrade", "head", url=db_url)
    assert result.returncode != 0
    assert "SchemaTooNewError" in result.stderr
    assert "breaking migration 999999" in result.stderr
    assert "Upgrade sqlalchemy-graphile" in result.stderr


def test_ledger_below_19_is_refused(db_url: str, db: psycopg.Connection) -> None:
    db.execute(f"delete from {S}.migrations where id >= 19")
    with pytest.raises(SchemaTooOldError, match="older than 19"):
        command.upgrade(alembic_config(db_url), "head")
    assert version_rows(db) == []


# --- concurrency --------------------------------------------------------------------------


def test_three_concurrent_alembic_processes(empty_db_url: str) -> None:
    errors = alembic_three_at_once("upgrade", "head", url=empty_db_url)
    installed = [stderr for stderr in errors if "installed schema" in stderr]
    assert len(installed) == 1
    assert_installed(empty_db_url)
