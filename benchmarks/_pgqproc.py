"""What runs inside the pgqueuer side's child processes.

``python -m benchmarks._pgqproc COMMAND ...``, one command per measurement:

* ``install URL``: install pgqueuer's tables with its own installer (``Queries.install``,
  pgqueuer's default ``durable`` tables, in the database's ``public`` schema).
* ``enqueue URL N``: add N ``log_if_999`` jobs with one batched ``Queries.enqueue`` call on
  a connection opened beforehand; prints ``{"call_s": ...}``.
* ``once URL LIMIT BATCH_SIZE``: pgqueuer's worker, a ``PgQueuer`` with one no-op
  entrypoint (``concurrency_limit=LIMIT``, 0 for none), run with ``batch_size=BATCH_SIZE`` in
  ``drain`` mode: it exits once the queue is empty.

Only this module imports pgqueuer, through :func:`importlib.import_module`, so the rest of
the benchmark, and type-checking it, works without pgqueuer installed.
Results go to stdout as one JSON line; logs go to stderr at WARNING level.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

import asyncpg

from ._child import run_child

pgqueuer = importlib.import_module("pgqueuer")
QueueExecutionMode = importlib.import_module("pgqueuer.types").QueueExecutionMode

#: The entrypoint every job is queued for; the name of the Node and Python task too.
ENTRYPOINT = "log_if_999"

logger = logging.getLogger("benchmarks.pgqueuer")


async def log_if_999(job: Any) -> None:
    """The no-op task, the twin of our and Node's ``log_if_999`` (``job`` is a
    ``pgqueuer.Job``)."""
    if job.payload == b"999":
        logger.info("job 999 ran")


async def install(url: str) -> dict[str, Any]:
    """Install pgqueuer's schema (its own DDL, one statement batch)."""
    connection = await asyncpg.connect(url)
    try:
        await pgqueuer.Queries(pgqueuer.AsyncpgDriver(connection)).install()
    finally:
        await connection.close()
    return {}


async def enqueue(url: str, count: int) -> dict[str, Any]:
    """Time one batched ``Queries.enqueue`` call adding ``count`` jobs."""
    connection = await asyncpg.connect(url)
    try:
        queries = pgqueuer.Queries(pgqueuer.AsyncpgDriver(connection))
        entrypoints = [ENTRYPOINT] * count
        payloads: list[bytes | None] = [str(i).encode() for i in range(count)]
        priorities = [0] * count
        started = time.perf_counter()
        ids = await queries.enqueue(entrypoints, payloads, priorities)
        seconds = time.perf_counter() - started
    finally:
        await connection.close()
    if len(ids) != count:
        raise RuntimeError(f"enqueue returned {len(ids)} ids, expected {count}")
    return {"call_s": seconds, "jobs": len(ids)}


async def once(url: str, limit: int, batch_size: int) -> dict[str, Any]:
    """Run pgqueuer's worker until the queue is empty."""
    connection = await asyncpg.connect(url)
    try:
        pgq = pgqueuer.PgQueuer(pgqueuer.AsyncpgDriver(connection))
        pgq.entrypoint(ENTRYPOINT, concurrency_limit=limit)(log_if_999)
        await pgq.run(batch_size=batch_size, mode=QueueExecutionMode.drain)
    finally:
        if not connection.is_closed():
            await connection.close()
    return {}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._pgqproc")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("install")
    command.add_argument("url")
    command = commands.add_parser("enqueue")
    command.add_argument("url")
    command.add_argument("count", type=int)
    command = commands.add_parser("once")
    command.add_argument("url")
    command.add_argument("limit", type=int)
    command.add_argument("batch_size", type=int)
    return parser


def _coroutine(args: argparse.Namespace) -> Coroutine[Any, Any, dict[str, Any]]:
    if args.command == "install":
        return install(args.url)
    if args.command == "enqueue":
        return enqueue(args.url, args.count)
    return once(args.url, args.limit, args.batch_size)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    run_child(args.loop, _coroutine(args))


if __name__ == "__main__":
    main()
