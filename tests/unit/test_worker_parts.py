"""Pure parts of the worker: JSON array splitting, error text, notification payloads,
backoff and sweep delays, the event subscriptions, and the fetched job row."""

from __future__ import annotations

import asyncio
import errno
import json
import math
from datetime import UTC, datetime

import asyncpg
import pytest

from sqlalchemy_graphile import BatchJobError, Job, PoolEvent, WorkerEvent, WorkerEvents
from sqlalchemy_graphile._backoff import Backoff
from sqlalchemy_graphile._store import FetchedJob, fetched_job
from sqlalchemy_graphile.worker._listener import parse_job_count, parse_migration
from sqlalchemy_graphile.worker._retry import (
    first_reset_locked_delay,
    is_connection_error,
    listen_reconnect_delay,
    reset_locked_delay,
    transient_backoff,
    with_retries,
)
from sqlalchemy_graphile.worker._runner import describe_error, split_json_array


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        " [ ] ",
        '[{"a":1}]',
        '[{"a":1}, { "b" : [1, {"c": "],}"}] }, "x\\"]", 3.5e2, null, true]',
        '[[1,2],[],{"k":"\\\\"}]',
    ],
)
def test_split_json_array_keeps_item_text(text: str) -> None:
    items = split_json_array(text)
    assert [json.loads(item) for item in items] == json.loads(text)
    for item in items:
        assert item in text  # cut out, not re-serialised


@pytest.mark.parametrize(
    ("text", "kind"),
    [('{"a":1}', "an object"), ('"s"', "a string"), ("1", "a number"), ("null", "null")],
)
def test_split_json_array_names_what_it_got(text: str, kind: str) -> None:
    with pytest.raises(ValueError, match=kind):
        split_json_array(text)


def test_describe_error() -> None:
    assert describe_error(ValueError("bad address")) == "ValueError: bad address"
    assert describe_error(KeyError()) == "KeyError"
    assert describe_error(RuntimeError("nul\x00byte")) == "RuntimeError: nul\\x00byte"
    assert describe_error(RuntimeError("lone \ud800")) == "RuntimeError: lone \\ud800"
    batch = BatchJobError([ValueError("one"), "two"])
    assert describe_error(batch) == "Batch failures:\none\ntwo"


@pytest.mark.parametrize(
    ("payload", "count"),
    [
        ('{"r":0.5,"count":3}', 3),
        ('{"count":-1}', -1),
        ('{"count":0}', 0),
        ("{}", 1),
        ("", 1),
        ("not json", 1),
        ('{"count":"many"}', 1),
        ("[1]", 1),
    ],
)
def test_parse_job_count(payload: str, count: int) -> None:
    assert parse_job_count(payload) == count


def test_parse_migration() -> None:
    assert parse_migration('{"migrationNumber":20,"breaking":true}') == (20, True)
    assert parse_migration('{"migrationNumber":20,"breaking":false}') == (20, False)
    assert parse_migration("garbage") == (None, False)


def test_listen_reconnect_delay_bounds() -> None:
    # ceil(J * min(60 s, 50 ms * e**attempts)), J in [0.5, 1]
    assert listen_reconnect_delay(1, uniform=0.0) == math.ceil(0.5 * 50 * math.e) / 1000
    assert listen_reconnect_delay(1, uniform=1.0) == math.ceil(50 * math.e) / 1000
    assert listen_reconnect_delay(100, uniform=1.0) == 60.0
    assert listen_reconnect_delay(100, uniform=0.0) == 30.0


def test_reset_locked_delays() -> None:
    assert reset_locked_delay(480, 600, uniform=0.0) == 480
    assert reset_locked_delay(480, 600, uniform=1.0) == 600
    assert first_reset_locked_delay(600, uniform=0.999) < 60
    assert first_reset_locked_delay(0.001, uniform=0.5) == pytest.approx(0.0005)


def test_backoff_is_capped_and_jittered() -> None:
    backoff = Backoff(0.05, 5.0)
    assert backoff.delay(0, uniform=0.5) == pytest.approx(0.05)
    assert backoff.delay(1000, uniform=1.0) == pytest.approx(7.5)
    assert backoff.delay(1000, uniform=0.0) == pytest.approx(2.5)


def test_transient_errors() -> None:
    assert transient_backoff(asyncpg.SerializationError("x")) is not None
    assert transient_backoff(asyncpg.DeadlockDetectedError("x")) is not None
    assert transient_backoff(asyncpg.CannotConnectNowError("x")) is not None
    assert transient_backoff(OSError(errno.EHOSTUNREACH, "x")) is not None
    assert transient_backoff(asyncpg.UniqueViolationError("x")) is None
    assert is_connection_error(ConnectionRefusedError())
    assert is_connection_error(asyncpg.ConnectionDoesNotExistError("x"))
    assert is_connection_error(asyncpg.AdminShutdownError("x"))
    assert not is_connection_error(asyncpg.UndefinedTableError("x"))


async def test_with_retries_retries_only_transient_errors() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise asyncpg.DeadlockDetectedError("deadlock")
        return "done"

    assert await with_retries(flaky) == "done"
    assert calls == 3

    async def broken() -> None:
        raise asyncpg.UndefinedTableError("missing")

    with pytest.raises(asyncpg.UndefinedTableError):
        await with_retries(broken)


async def test_events_reach_sync_and_async_callbacks() -> None:
    events = WorkerEvents()
    seen: list[str] = []
    done = asyncio.Event()

    def on_create(event: PoolEvent) -> None:
        seen.append(f"sync {event.name}")

    async def on_any(event: WorkerEvent) -> None:
        seen.append(f"async {event.name}")
        done.set()

    events.on("pool:create", on_create)
    events.on_any(on_any)
    events.emit(PoolEvent(name="pool:create", pool_id="sgpool-1"))
    await asyncio.wait_for(done.wait(), 5)
    assert seen == ["sync pool:create", "async pool:create"]
    events.off("pool:create", on_create)
    events.emit(PoolEvent(name="pool:create", pool_id="sgpool-1"))
    await events.drain(5)
    assert seen.count("sync pool:create") == 1


async def test_drain_cancels_slow_callbacks() -> None:
    events = WorkerEvents()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow(_event: WorkerEvent) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    events.on_any(slow)
    events.emit(PoolEvent(name="stop", pool_id="sgpool-1"))
    await asyncio.wait_for(started.wait(), 5)
    await events.drain(0.01)
    assert cancelled.is_set()


def test_listening_follows_subscriptions() -> None:
    events = WorkerEvents()
    assert not events.listening("job:success", "job:complete")

    def callback(_event: WorkerEvent) -> None:
        pass

    events.on("job:complete", callback)
    assert events.listening("job:success", "job:complete")
    assert not events.listening("job:success")
    events.off("job:complete", callback)
    assert not events.listening("job:complete")
    events.on_any(callback)
    assert events.listening("job:success")


def test_fetched_job_builds_its_job_from_the_row_once() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    row = (
        7,
        3,
        1,
        '{"a": 1}',
        -1,
        at,
        2,
        25,
        "Boom",
        at,
        at,
        "k",
        at,
        "sgpool-1",
        4,
        '{"slow": true}',
    )
    fetched = fetched_job(row, "send", "q")
    assert (fetched.id, fetched.queue_id, fetched.task_identifier, fetched.payload_json) == (
        7,
        3,
        "send",
        '{"a": 1}',
    )
    assert fetched.job == Job(
        id=7,
        task_identifier="send",
        queue_name="q",
        payload_json='{"a": 1}',
        priority=-1,
        run_at=at,
        attempts=2,
        max_attempts=25,
        last_error="Boom",
        created_at=at,
        updated_at=at,
        key="k",
        locked_at=at,
        locked_by="sgpool-1",
        revision=4,
        flags={"slow": True},
    )
    assert fetched.job is fetched.job
    again = FetchedJob(fetched.job, 3)  # from a built Job, as an in-memory store makes them
    assert (again.id, again.queue_id, again.task_identifier, again.payload_json) == (
        7,
        3,
        "send",
        '{"a": 1}',
    )
    assert again.job is fetched.job


def test_callbacks_must_be_callable() -> None:
    with pytest.raises(TypeError):
        WorkerEvents().on("job:start", "not callable")  # type: ignore[call-overload]
