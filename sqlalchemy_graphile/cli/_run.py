"""``run``: install or check the schema, then run a worker for the given task modules."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .._urls import with_query_option
from ..cron import CronItem, parse_crontab
from ..errors import ConfigurationError, CrontabError
from ..worker import Worker, option_flags
from ._common import (
    APPLICATION_NAME_ENV_VAR,
    CLI_APPLICATION_NAME,
    database_url,
    open_engine,
    schema_name,
)
from ._loader import load_plugins, load_tasks


def load_crontab(path: str) -> list[CronItem]:
    """The cron items of the crontab file at ``path``. Raises :class:`ConfigurationError`
    if the file cannot be read and :class:`CrontabError` (naming the file) if it does not
    parse."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
        raise ConfigurationError(f"cannot read the crontab file {path!r}: {reason}") from None
    try:
        return parse_crontab(text)
    except CrontabError as error:
        raise CrontabError(f"in the crontab file {path!r}: {error}", line=error.line) from None


def worker_url(url: str, application_name: str | None) -> str:
    """``url`` with its ``application_name`` set when one is given (the worker names its
    LISTEN connection ``<name>-listen``), edited as text so that a worker given it does not
    import SQLAlchemy."""
    if not application_name:
        return url
    return with_query_option(url, "application_name", application_name)


async def run(args: argparse.Namespace) -> int:
    """Follow Graphile Worker's order: connect and migrate (unless ``--no-migrate``), stop
    there with ``--schema-only``, load the tasks and the ``--crontab`` file, then run until
    stopped or, with ``--once``, until no job is runnable.

    Returns 0 after a graceful shutdown, or 57 when a breaking migration was applied while
    the worker ran.
    """
    schema = schema_name(args)
    url = database_url(args)
    if args.migrate:
        # Imported here: with --no-migrate the worker never loads SQLAlchemy's asyncio
        # extension and ORM, and starts sooner.
        from ..utils import WorkerUtils

        async with open_engine(url, CLI_APPLICATION_NAME) as engine:
            await WorkerUtils(engine, schema=schema).migrate()
    if args.schema_only:
        print("Schema updated")
        return 0
    tasks = load_tasks(args.tasks)
    crontab = load_crontab(args.crontab) if args.crontab is not None else None
    worker = Worker(
        worker_url(url, args.name or os.environ.get(APPLICATION_NAME_ENV_VAR)),
        tasks=tasks,
        schema=schema,
        crontab=crontab,
        plugins=load_plugins(args.plugins),
        # The flags of the worker's options are named after them (see _parser.py).
        **{flag.option: getattr(args, flag.option) for flag in option_flags()},
    )
    if args.once:
        await worker.run_once()
    else:
        await worker.run()
    return worker.exit_code
