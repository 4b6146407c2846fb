"""Parsing of the command line: strictness, global options, per-command checks."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest

from sqlalchemy_graphile.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, main
from sqlalchemy_graphile.cli._common import (
    database_url,
    jsonable,
    parse_time,
    schema_name,
    table,
)
from sqlalchemy_graphile.cli._demo import _use_embedded
from sqlalchemy_graphile.cli._parser import parse_args
from sqlalchemy_graphile.errors import ConfigurationError, InvalidIdentifierError


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == EXIT_USAGE
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["list", "--bogus"],
        ["--bogus", "list"],
        ["list", "--stat", "ready"],  # abbreviations are not accepted
        ["run", "--task", "m"],
        ["frobnicate"],
        [],
        ["show", "abc"],
        ["show", "0"],
        ["run", "--tasks", "m", "-j", "0"],
        ["run", "--tasks", "m", "--poll-interval", "0"],
        ["run", "--tasks", "m", "--poll-interval", "nan"],
        ["run", "--tasks", "m", "--max-pool-size", "0"],
        ["run", "--tasks", "m", "--local-queue-size", "0"],
        ["run", "--tasks", "m", "--local-queue-ttl", "inf"],
        ["run", "--tasks", "m", "--graceful-shutdown-abort-timeout", "-1"],
        ["run", "--tasks", "m", "--min-reset-locked-interval", "soon"],
        ["run", "--tasks", "m", "--complete-job-batch-delay", "-2"],
        ["run", "--tasks", "m", "--pooler", "session"],
        ["list", "--state", "sleeping"],
        ["list", "--limit", "0"],
        ["list", "--offset", "-1"],
        ["cleanup", "vacuum"],
        ["add", "t", "--job-key-mode", "sometimes", "--key", "k"],
        ["add", "t", "--payload", "{}", "--payload-file", "p.json"],
        ["reschedule", "1", "--now", "--run-at", "2030-01-01T00:00:00Z"],
    ],
)
def test_bad_command_lines_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert "usage:" in _usage_error(argv, capsys)


def test_a_refused_option_value_is_a_usage_error_naming_the_problem(
    capsys: pytest.CaptureFixture[str],
) -> None:
    error = _usage_error(["run", "--tasks", "m", "-j", "0"], capsys)
    assert "argument -j/--jobs: Input should be greater than or equal to 1" in error
    error = _usage_error(["run", "--tasks", "m", "--local-queue-ttl", "x"], capsys)
    assert "argument --local-queue-ttl: 'x' is not a number" in error
    error = _usage_error(["run", "--tasks", "m", "--pooler", "statement"], capsys)
    assert "argument --pooler: pooler must be None or 'transaction', not 'statement'" in error


def test_run_needs_tasks_unless_schema_only(capsys: pytest.CaptureFixture[str]) -> None:
    err = _usage_error(["run"], capsys)
    assert "run needs --tasks" in err
    assert err.startswith("usage: sqlalchemy-graphile run ")
    assert parse_args(["run", "--schema-only"]).schema_only is True


def test_run_usage_shows_tasks_as_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["run", "--help"])
    usage = " ".join(capsys.readouterr().out.split("\n\n", 1)[0].split())
    assert " --tasks MODULE[:ATTR] [MODULE[:ATTR] ...] " in usage
    assert "[--tasks" not in usage
    assert "[--once]" in usage


def test_once_and_schema_only_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    err = _usage_error(["run", "--schema-only", "--once"], capsys)
    assert "--once and --schema-only" in err
    assert "not allowed with" in _usage_error(["run", "--schema-only", "--no-migrate"], capsys)


def test_reschedule_needs_a_change(capsys: pytest.CaptureFixture[str]) -> None:
    assert "reschedule needs" in _usage_error(["reschedule", "1", "2"], capsys)
    assert parse_args(["reschedule", "1", "--attempts", "0"]).attempts == 0


def test_job_key_mode_needs_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--job-key-mode needs --key" in _usage_error(
        ["add", "t", "--job-key-mode", "replace"], capsys
    )


def test_global_options_go_before_or_after_the_command() -> None:
    before = parse_args(["-c", "postgresql://a/b", "-s", "jobs", "--json", "-v", "stats"])
    after = parse_args(["stats", "-c", "postgresql://a/b", "-s", "jobs", "--json", "-v"])
    for args in (before, after):
        assert (args.connection, args.schema, args.json, args.verbose) == (
            "postgresql://a/b",
            "jobs",
            True,
            True,
        )
    plain = parse_args(["stats"])
    assert (plain.connection, plain.schema, plain.json, plain.verbose) == (
        None,
        None,
        False,
        False,
    )


def test_run_options() -> None:
    args = parse_args(
        [
            *("run", "--tasks", "a", "b:jobs", "--tasks", "c", "-j", "4"),
            *("--poll-interval", "0.5", "--once", "--no-listen", "--forbidden-flag", "x"),
            *("--forbidden-flag", "y", "--name", "sg-worker-1", "--no-migrate"),
        ]
    )
    assert args.tasks == ["a", "b:jobs", "c"]
    assert (args.concurrency, args.poll_interval, args.once, args.listen) == (4, 0.5, True, False)
    assert args.forbidden_flags == ["x", "y"]
    assert (args.name, args.migrate, args.schema_only) == ("sg-worker-1", False, False)
    assert args.handler == "run.run"
    pool = parse_args(["run", "--tasks", "a", "-m", "20", "--no-prepared-statements"])
    assert (pool.max_pool_size, pool.prepared_statements) == (20, False)
    pooled = parse_args(
        ["run", "--tasks", "a", "--pooler", "transaction", "--listen-url", "postgresql://db/app"]
    )
    assert (pooled.pooler, pooled.listen_url) == ("transaction", "postgresql://db/app")
    defaults = parse_args(["run", "--tasks", "a"])
    assert (defaults.concurrency, defaults.poll_interval, defaults.once) == (1, 2.0, False)
    assert (defaults.listen, defaults.migrate, defaults.forbidden_flags) == (True, True, None)
    assert (defaults.max_pool_size, defaults.prepared_statements) == (None, True)
    assert (defaults.pooler, defaults.listen_url) == (None, None)


def test_add_options() -> None:
    args = parse_args(
        [
            *("add", "send_email", "--payload", '{"to": "a@b.c"}', "--queue", "mail"),
            *("--run-at", "now", "--max-attempts", "3", "--priority", "-5", "--flag", "a"),
            *("--flag", "b", "--key", "k1", "--job-key-mode", "preserve-run-at"),
        ]
    )
    assert (args.identifier, args.payload, args.queue) == ("send_email", '{"to": "a@b.c"}', "mail")
    assert (args.run_at, args.max_attempts, args.priority) == ("now", 3, -5)
    assert (args.flags, args.key, args.job_key_mode) == (["a", "b"], "k1", "preserve_run_at")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["GC_JOB_QUEUES"], ["gc-job-queues"]),
        (["delete_permafailed_jobs"], ["delete-permanently-failed-jobs"]),
        (["gc-task-identifiers", "gc-job-queues"], ["gc-task-identifiers", "gc-job-queues"]),
        ([], []),
    ],
)
def test_cleanup_task_names(given: list[str], expected: list[str]) -> None:
    assert parse_args(["cleanup", *given]).tasks == expected


def test_id_lists() -> None:
    assert parse_args(["complete", "1", "2", "3"]).job_ids == [1, 2, 3]
    assert parse_args(["fail", "7", "--reason", "gone"]).reason == "gone"
    assert parse_args(["force-unlock", "pool-a", "pool-b"]).worker_ids == ["pool-a", "pool-b"]


def test_help_and_version_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == EXIT_OK
    assert "COMMAND" in capsys.readouterr().out
    assert main(["--version"]) == EXIT_OK
    assert "sqlalchemy-graphile" in capsys.readouterr().out


def test_missing_database_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("PGDATABASE", raising=False)
    assert main(["stats"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("sqlalchemy-graphile: error: no database given")
    assert "Traceback" not in err
    assert err.count("\n") == 1


def test_bad_schema_is_refused_before_connecting(capsys: pytest.CaptureFixture[str]) -> None:
    # Port 1 has no server: the schema check must fail first.
    url = "postgresql://nobody@127.0.0.1:1/none"
    assert main(["-c", url, "-s", 'x"; drop table y; --', "stats"]) == EXIT_ERROR
    assert "not a safe identifier" in capsys.readouterr().err


def test_verbose_prints_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("PGDATABASE", raising=False)
    assert main(["-v", "stats"]) == EXIT_ERROR
    assert "Traceback" in capsys.readouterr().err


def test_database_url_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://env/db")
    monkeypatch.delenv("PGDATABASE", raising=False)
    assert database_url(argparse.Namespace(connection="postgresql://flag/db")) == (
        "postgresql://flag/db"
    )
    assert database_url(argparse.Namespace(connection=None)) == "postgresql://env/db"
    monkeypatch.delenv("DATABASE_URL")
    with pytest.raises(ConfigurationError, match="no database given"):
        database_url(argparse.Namespace(connection=None))
    monkeypatch.setenv("PGDATABASE", "app")
    assert database_url(argparse.Namespace(connection=None)) == "postgresql://"


def test_schema_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRAPHILE_WORKER_SCHEMA", raising=False)
    assert schema_name(argparse.Namespace(schema=None)) == "graphile_worker"
    monkeypatch.setenv("GRAPHILE_WORKER_SCHEMA", "from_env")
    assert schema_name(argparse.Namespace(schema=None)) == "from_env"
    assert schema_name(argparse.Namespace(schema="from_flag")) == "from_flag"
    with pytest.raises(InvalidIdentifierError):
        schema_name(argparse.Namespace(schema="pg_catalog"))


def test_parse_time() -> None:
    before = datetime.now(UTC)
    assert before <= parse_time("now") <= datetime.now(UTC)
    assert parse_time("2030-01-02T03:04:05Z") == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_time("2030-01-02T05:04:05+02:00").utcoffset() == timedelta(hours=2)
    with pytest.raises(ConfigurationError, match="no time zone"):
        parse_time("2030-01-02T03:04:05")
    with pytest.raises(ConfigurationError, match="not an ISO 8601 time"):
        parse_time("tomorrow")


def test_table_and_json_forms() -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert table(["id", "key"], [[1, None], [22, "a\nb"]]).splitlines() == [
        "id  key",
        "1   -",
        "22  a b",
    ]
    assert table(["id"], []) == "id"
    assert jsonable({"at": when, "rows": (1, [when])}) == {
        "at": "2030-01-02T03:04:05+00:00",
        "rows": [1, ["2030-01-02T03:04:05+00:00"]],
    }


@pytest.mark.parametrize(
    ("argv", "environment", "expected"),
    [
        (["demo"], {}, False),
        (["demo", "--embedded"], {}, True),
        (["demo"], {"SG_DEMO_EMBEDDED": "1"}, True),
        (["demo"], {"SG_DEMO_EMBEDDED": "0"}, False),
        (["demo", "--embedded"], {"DATABASE_URL": "postgresql://x@y/z"}, True),
    ],
)
def test_the_demo_s_embedded_switch(
    argv: list[str],
    environment: dict[str, str],
    expected: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SG_DEMO_EMBEDDED", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert _use_embedded(parse_args(argv)) is expected
    with pytest.raises(ConfigurationError, match="cannot use both -c and the embedded"):
        _use_embedded(parse_args(["-c", "postgresql://x@y/z", "demo", "--embedded"]))
