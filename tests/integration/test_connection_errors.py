"""A server that cannot be reached: the worker and the command line raise our
DatabaseConnectionError, naming the host (and the port) they tried."""

from __future__ import annotations

import socket
from typing import ClassVar

import pytest

from sqlalchemy_graphile import DatabaseConnectionError, Task, Worker, WorkerContext
from sqlalchemy_graphile.cli import EXIT_ERROR, main

#: A name in the reserved .invalid domain never resolves (RFC 6761).
NO_SUCH_HOST = "no-such-host.invalid"


class Noop(Task):
    IDENTIFIER: ClassVar[str] = "noop"

    async def run(self, ctx: WorkerContext) -> None:
        return None


def _closed_port() -> int:
    """A local port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_worker_names_the_host_and_port_that_refused() -> None:
    port = _closed_port()
    worker = Worker(f"postgresql://postgres@127.0.0.1:{port}/x", tasks=[Noop])
    with pytest.raises(DatabaseConnectionError) as raised:
        await worker.run_once()
    assert str(raised.value) == (
        f"cannot connect to the database at 127.0.0.1:{port}: connection refused "
        "(is PostgreSQL running there, on that port?)"
    )
    assert (raised.value.host, raised.value.port) == ("127.0.0.1", str(port))
    assert isinstance(raised.value, ConnectionError)
    assert raised.value.__suppress_context__


async def test_worker_names_the_host_it_cannot_find() -> None:
    worker = Worker(f"postgresql://postgres@{NO_SUCH_HOST}/x", tasks=[Noop])
    with pytest.raises(DatabaseConnectionError, match=f"host '{NO_SUCH_HOST}' was not found"):
        await worker.run()


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--tasks", "tests.integration.test_connection_errors", "--once"],
        ["run", "--tasks", "tests.integration.test_connection_errors", "--no-migrate"],
        ["add", "noop"],
        ["migrate"],
    ],
    ids=["run", "run --no-migrate", "add", "migrate"],
)
def test_cli_names_the_host_and_port(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    port = _closed_port()
    assert main(["-c", f"postgresql://postgres@127.0.0.1:{port}/x", *argv]) == EXIT_ERROR
    assert capsys.readouterr().err == (
        f"sqlalchemy-graphile: error: cannot connect to the database at 127.0.0.1:{port}: "
        "connection refused (is PostgreSQL running there, on that port?)\n"
    )
    assert main(["-c", f"postgresql://postgres@{NO_SUCH_HOST}:{port}/x", *argv]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith(
        f"sqlalchemy-graphile: error: cannot connect to the database: host '{NO_SUCH_HOST}' "
        "was not found ("
    )
