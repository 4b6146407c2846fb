"""A server the command line cannot reach through its own engine (the commands that install
the schema or run SQL through SQLAlchemy) is named as the worker names one: host, port,
database and schema, on one line."""

from __future__ import annotations

import pytest

from sqlalchemy_graphile.cli import EXIT_ERROR, main

from .test_worker_start_errors import unused_port

#: A name in the reserved .invalid domain never resolves (RFC 6761).
NO_SUCH_HOST = "no-such-host.invalid"


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--tasks", "tests.integration.test_worker_start_errors", "--once"],
        ["add", "noop"],
        ["migrate"],
        ["stats"],
    ],
    ids=["run", "add", "migrate", "stats"],
)
def test_the_command_line_names_the_host_and_port(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    port = unused_port()
    assert main(["-c", f"postgresql://postgres@127.0.0.1:{port}/app", *argv]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith(
        f"sqlalchemy-graphile: error: cannot connect to the database at 127.0.0.1:{port}/app "
        "(schema 'graphile_worker'): ConnectionRefusedError: "
    ), err
    assert len(err.splitlines()) == 1
    assert main(["-c", f"postgresql://postgres@{NO_SUCH_HOST}/app", *argv]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith(
        f"sqlalchemy-graphile: error: cannot connect to the database at {NO_SUCH_HOST}:5432/app "
        "(schema 'graphile_worker'): gaierror: "
    ), err
