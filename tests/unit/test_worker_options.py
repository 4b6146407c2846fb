"""Worker options are checked at construction, before any connection."""

from __future__ import annotations

import argparse
import inspect
from typing import Any, ClassVar

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from sqlalchemy_graphile import (
    ConfigurationError,
    InvalidIdentifierError,
    InvalidTaskError,
    Task,
    Worker,
    WorkerContext,
)
from sqlalchemy_graphile.cli._parser import build_parser, parse_args
from sqlalchemy_graphile.worker import WorkerOptions
from sqlalchemy_graphile.worker._options import (
    Flag,
    NoFlag,
    default_of,
    option_fields,
    resolve_forbidden_flags,
)

URL = "postgresql://app:secret@db.example:5433/app"


class SendEmail(Task):
    IDENTIFIER: ClassVar[str] = "send_email"

    async def run(self, ctx: WorkerContext) -> None:
        return None


class SendEmailV2(Task):
    IDENTIFIER: ClassVar[str] = "send_email"

    async def run(self, ctx: WorkerContext) -> None:
        return None


def worker(**options: Any) -> Worker:
    options.setdefault("tasks", [SendEmail])
    return Worker(URL, **options)


def test_defaults() -> None:
    options = worker().options
    assert options.concurrency == 1
    assert options.poll_interval == 2.0
    assert options.schema == "graphile_worker"
    assert options.max_pool_size is None
    assert options.max_connections == 10
    assert (options.min_reset_locked_interval, options.max_reset_locked_interval) == (480.0, 600.0)
    assert options.graceful_shutdown_abort_timeout == 5.0
    assert options.listen is True
    assert worker(concurrency=20).options.max_connections == 20
    assert worker(concurrency=20, max_pool_size=5).options.max_connections == 5


def test_pool_id_is_a_fresh_lock_owner_id() -> None:
    first, second = worker().pool_id, worker().pool_id
    assert first != second
    assert first.startswith("sgpool-")
    assert len(first) == len("sgpool-") + 18
    assert int(first.removeprefix("sgpool-"), 16) >= 0


def test_worker_id_is_a_deprecated_name_of_pool_id() -> None:
    w = worker()
    with pytest.deprecated_call(match="use Worker.pool_id"):
        assert w.worker_id == w.pool_id


def test_duplicate_identifiers_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="'send_email' is registered twice"):
        worker(tasks=[SendEmail, SendEmailV2])
    with pytest.raises(ConfigurationError, match="registered twice"):
        worker(tasks=(t for t in [SendEmail, SendEmail]))


@pytest.mark.parametrize("tasks", [[], "send_email", None])
def test_tasks_must_be_a_non_empty_iterable(tasks: Any) -> None:
    with pytest.raises(ConfigurationError):
        worker(tasks=tasks)


def test_tasks_must_be_task_classes() -> None:
    with pytest.raises(InvalidTaskError):
        worker(tasks=[object])


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("concurrency", 0),
        ("concurrency", True),
        ("concurrency", 1.5),
        ("poll_interval", 0),
        ("poll_interval", float("nan")),
        ("poll_interval", "2"),
        ("graceful_shutdown_abort_timeout", -1),
        ("max_pool_size", 0),
        ("min_reset_locked_interval", 0),
        ("max_reset_locked_interval", float("inf")),
        ("listen", "yes"),
        ("use_local_time", 1),
        ("handle_signals", None),
        ("prepared_statements", 0),
        ("pooler", "session"),
        ("pooler", True),
        ("listen_url", ""),
        ("listen_url", 5),
        ("forbidden_flags", "flag"),
        ("forbidden_flags", ["ok", 3]),
        ("extensions", "not a list"),
        ("events", object()),
    ],
)
def test_bad_options_are_refused(name: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=name if name != "extensions" else "extensions"):
        worker(**{name: value})


def test_reset_locked_interval_bounds_must_be_ordered() -> None:
    with pytest.raises(ConfigurationError, match="must not be less than"):
        worker(min_reset_locked_interval=10, max_reset_locked_interval=5)


def test_two_extensions_of_one_type_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="two extensions"):
        worker(extensions=[{}, {}])


def test_bad_schema_name_is_refused() -> None:
    with pytest.raises(InvalidIdentifierError):
        worker(schema='bad"name')


@pytest.mark.parametrize(
    "database",
    [42, "mysql://localhost/db", "not a url at all", URL + "?command_timeout=1"],
)
def test_bad_database_is_refused(database: Any) -> None:
    with pytest.raises(ConfigurationError):
        Worker(database, tasks=[SendEmail])


def test_database_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        Worker(tasks=[SendEmail])
    monkeypatch.setenv("DATABASE_URL", URL)
    assert Worker(tasks=[SendEmail]).options.concurrency == 1


def test_connection_options_come_from_the_url() -> None:
    database = worker()._database
    assert database.asyncpg_kwargs(application_name="sg-worker", prepared_statements=True) == {
        "dsn": URL,
        "server_settings": {"application_name": "sg-worker"},
    }
    assert database.address() == "db.example:5433/app"
    assert database.application_name == "sg-worker"
    assert database.listen_application_name == "sg-worker-listen"
    named = Worker(URL + "?application_name=billing&sslmode=disable", tasks=[SendEmail])
    assert named._database.listen_application_name == "billing-listen"
    assert named._database.url.dsn == URL + "?application_name=billing&sslmode=disable"


def test_the_listen_url_is_resolved_like_the_database() -> None:
    direct = worker(listen_url="postgresql://app@db.internal:5432/app")
    assert direct._listen_database.address() == "db.internal:5432/app"
    plain = worker()
    assert plain._listen_database is plain._database
    with pytest.raises(ConfigurationError, match="only PostgreSQL"):
        worker(listen_url="mysql://app@db/app")


async def test_an_engine_gives_its_url_and_is_kept_for_adds() -> None:
    engine = create_async_engine(
        "postgresql+asyncpg://app:s%40cret@db.example/app?application_name=billing",
        connect_args={"command_timeout": 7},
    )
    try:
        database = Worker(engine, tasks=[SendEmail])._database
        assert database.engine is engine
        assert database.make_engine(None) is engine
        kwargs = database.asyncpg_kwargs(application_name="x", prepared_statements=False)
        assert kwargs == {
            "dsn": "postgresql://app:s%40cret@db.example/app?application_name=billing",
            "server_settings": {"application_name": "x"},
            "statement_cache_size": 0,
        }
        assert database.application_name == "billing"
    finally:
        await engine.dispose()


async def test_forbidden_flags_resolution() -> None:
    async def async_flags() -> list[str]:
        return ["a"]

    assert await resolve_forbidden_flags(None) is None
    assert await resolve_forbidden_flags(("a", "b")) == ["a", "b"]
    assert await resolve_forbidden_flags(lambda: None) is None
    assert await resolve_forbidden_flags(lambda: ["x"]) == ["x"]
    assert await resolve_forbidden_flags(async_flags) == ["a"]
    with pytest.raises(ConfigurationError, match="returned"):
        await resolve_forbidden_flags(lambda: "x")


async def test_stop_before_run_is_a_no_op() -> None:
    w = worker()
    await w.stop()
    assert w.exit_code == 0


# --- declared once: the signature, the model and the command line agree --------------------

#: Keywords of Worker(...) that are not options of WorkerOptions.
NOT_OPTIONS = {"events"}


def _defaults() -> WorkerOptions:
    return WorkerOptions.build(tasks=[SendEmail])


def test_every_option_is_a_worker_keyword_with_the_same_default() -> None:
    parameters = inspect.signature(Worker.__init__).parameters
    keywords = {n: p for n, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert list(option_fields()) == [n for n in keywords if n not in NOT_OPTIONS], (
        "Worker.__init__ must take every WorkerOptions field as a keyword, in the same order"
    )
    defaults = _defaults()
    for name, field in option_fields().items():
        default = keywords[name].default
        if field.is_required():
            assert default is inspect.Parameter.empty, f"{name} is required in WorkerOptions"
            continue
        given = WorkerOptions.build(tasks=[SendEmail], **{name: default})
        assert getattr(given, name) == getattr(defaults, name), (
            f"Worker(..., {name}={default!r}) does not give WorkerOptions' default"
        )


def test_every_option_is_a_run_flag_with_the_same_default_or_says_why_not() -> None:
    run = _run_parser()
    destinations = {action.dest: action for action in run._actions}
    parsed = parse_args(["run", "--tasks", "app.tasks"])
    defaults = _defaults()
    for name, field in option_fields().items():
        (marker,) = [m for m in field.metadata if isinstance(m, Flag | NoFlag)]
        if isinstance(marker, NoFlag):
            assert marker.reason, f"say why {name} has no flag"
            continue
        action = destinations[name]
        assert action.help, f"the flag of {name} has no help"
        assert any(o.startswith("--") for o in action.option_strings)
        given = WorkerOptions.build(tasks=[SendEmail], **{name: getattr(parsed, name)})
        assert getattr(given, name) == getattr(defaults, name), (
            f"run without {action.option_strings[-1]} does not give {name}'s default"
        )


def test_every_option_is_documented_where_users_read() -> None:
    doc = Worker.__doc__ or ""
    for name, field in option_fields().items():
        assert field.description, f"{name} has no description"
        assert f"``{name}``" in doc, f"Worker's docstring does not list {name}"
        if not field.is_required():
            default_of(field)  # computable without other options


def test_flags_give_the_options_their_values() -> None:
    args = parse_args(
        [
            *("run", "--tasks", "app.tasks", "-j", "3", "--use-local-time"),
            *("--graceful-shutdown-abort-timeout", "0", "--min-reset-locked-interval", "1"),
            *("--max-reset-locked-interval", "2", "--forbidden-flag", "gpu"),
        ]
    )
    assert args.concurrency == 3
    assert args.use_local_time is True
    assert args.graceful_shutdown_abort_timeout == 0.0
    assert (args.min_reset_locked_interval, args.max_reset_locked_interval) == (1.0, 2.0)
    assert args.forbidden_flags == ["gpu"]


def _run_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    run: argparse.ArgumentParser = commands.choices["run"]
    return run
