"""An application's worker entry point: tasks, an extension, and a graceful shutdown.

Run it with the database in ``$DATABASE_URL`` (the schema must be installed, e.g. with
``sqlalchemy-graphile migrate``)::

    DATABASE_URL=postgresql://postgres@127.0.0.1/postgres python examples/app_worker.py

then add work from another shell::

    sqlalchemy-graphile add greet --payload '{"name": "Ada"}'
    sqlalchemy-graphile add word_count --payload '{"text": "to be or not to be"}'

SIGINT (Ctrl-C) or SIGTERM stops it gracefully: running jobs finish, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import Counter
from typing import ClassVar

from sqlalchemy_graphile import BatchTask, Task, Worker, WorkerContext

logger = logging.getLogger("app_worker")


class Greeter:
    """An extension: process-local configuration and state the tasks share.

    Payloads carry durable input; objects like this (clients, pools, settings, counters)
    are handed to the worker once and reached with ``ctx.get_ext(Greeter)``.
    """

    def __init__(self, greeting: str) -> None:
        self.greeting = greeting
        self.greeted: Counter[str] = Counter()
        self._lock = threading.Lock()  # sync tasks run in threads

    def record(self, name: str) -> None:
        with self._lock:
            self.greeted[name] += 1


class Greet(Task):
    """An ``async`` task: it runs on the worker's event loop."""

    IDENTIFIER: ClassVar[str] = "greet"
    name: str

    async def run(self, ctx: WorkerContext) -> None:
        greeter = ctx.get_ext(Greeter)
        if greeter is None:
            raise RuntimeError("the worker was started without a Greeter extension")
        greeter.record(self.name)
        ctx.logger.info("%s, %s!", greeter.greeting, self.name)


class WordCount(Task):
    """A plain ``def`` task: it runs in a thread, so CPU work never blocks the event loop."""

    IDENTIFIER: ClassVar[str] = "word_count"
    text: str

    def run(self, ctx: WorkerContext) -> None:
        words = Counter(self.text.split())
        ctx.logger.info("%d words, most common: %s", words.total(), words.most_common(1))


class Audit(BatchTask):
    """A batch task: one job holds many items; failed items are retried on their own."""

    IDENTIFIER: ClassVar[str] = "audit"
    event: str

    @classmethod
    async def run_batch(cls, items: list[Audit], ctx: WorkerContext) -> None:
        ctx.logger.info("audited %d events: %s", len(items), ", ".join(i.event for i in items))


def jobs() -> list[type[Task] | type[BatchTask]]:
    """Every task type this application runs; also usable as
    ``sqlalchemy-graphile run --tasks app_worker:jobs``."""
    return [Greet, WordCount, Audit]


async def main() -> None:
    """Run the worker until SIGINT or SIGTERM, then report and return."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    greeter = Greeter(greeting=os.environ.get("GREETING", "Hello"))
    worker = Worker(
        None,  # the database comes from $DATABASE_URL
        tasks=jobs(),
        concurrency=int(os.environ.get("WORKER_CONCURRENCY", "4")),
        extensions=[greeter],
    )
    logger.info("worker starting; stop it with Ctrl-C or SIGTERM")
    # run() handles SIGINT and SIGTERM itself: it stops fetching, lets running jobs finish,
    # releases its connections and returns.
    await worker.run()
    logger.info("worker stopped after greeting %d people", sum(greeter.greeted.values()))


if __name__ == "__main__":
    asyncio.run(main())
