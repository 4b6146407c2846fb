"""A worker that cannot reach or use its database at start raises DatabaseConnectionError
naming the host, port, database and schema; the command line prints it on one line. A
worker asked to run while it runs raises WorkerStateError."""

from __future__ import annotations

import asyncio
import socket
from typing import ClassVar

import pytest

from sqlalchemy_graphile import (
    DatabaseConnectionError,
    Task,
    Worker,
    WorkerContext,
    WorkerStateError,
)
from sqlalchemy_graphile.cli import EXIT_ERROR, main

pytestmark = pytest.mark.schema_flavours("ours", "node")

#: A start that fails must fail fast; this bounds it so a hang fails the test instead.
START_TIMEOUT = 30


class Noop(Task):
    IDENTIFIER: ClassVar[str] = "noop"

    async def run(self, ctx: WorkerContext) -> None:
        return None


def unused_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def start_error(url: str, schema: str | None = None) -> DatabaseConnectionError:
    worker = Worker(url, tasks=[Noop], schema=schema, handle_signals=False)
    with pytest.raises(DatabaseConnectionError) as raised:
        async with asyncio.timeout(START_TIMEOUT):
            await worker.run_once()
    assert raised.value.__cause__ is not None, "the driver's error is kept as the cause"
    return raised.value


async def test_a_refused_port_is_named_with_its_host() -> None:
    port = unused_port()
    error = await start_error(f"postgresql://postgres@127.0.0.1:{port}/app", schema="jobs")
    assert isinstance(error, ConnectionError)
    message = str(error)
    assert f"cannot connect to the database at 127.0.0.1:{port}/app" in message
    assert "schema 'jobs'" in message
    assert "ConnectionRefusedError" in message


async def test_an_unknown_host_is_named() -> None:
    error = await start_error("postgresql://postgres@no-such-host.invalid/app")
    assert "no-such-host.invalid:5432/app" in str(error)
    assert "schema 'graphile_worker'" in str(error)


async def test_an_unknown_database_is_named(db_url: str) -> None:
    url = db_url.rsplit("/", 1)[0] + "/no_such_database_here"
    error = await start_error(url)
    assert "cannot use the database at" in str(error)
    assert "/no_such_database_here" in str(error)
    assert "InvalidCatalogNameError" in str(error)


def test_the_command_line_prints_it_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    port = unused_port()
    url = f"postgresql://postgres@127.0.0.1:{port}/app"
    status = main(["-c", url, "run", "--tasks", __name__, "--once", "--no-migrate"])
    assert status == EXIT_ERROR
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("sqlalchemy-graphile: error: cannot connect to the database at")
    assert f"127.0.0.1:{port}/app" in lines[-1]


async def test_running_a_running_worker_is_refused(db_url: str) -> None:
    async with asyncio.timeout(START_TIMEOUT), Worker(db_url, tasks=[Noop]) as worker:
        with pytest.raises(WorkerStateError, match="already running"):
            await worker.run_once()
        with pytest.raises(RuntimeError):
            await worker.run()
