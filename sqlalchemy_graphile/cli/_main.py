"""The entry point: parse, set up logging, run the command, turn errors into exit codes."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pydantic

from .._validation import validation_problems
from ..errors import ConfigurationError, GraphileWorkerError, SchemaTooNewError
from ..log_format import JsonFormatter
from ..worker._log_output import LOG_FORMAT
from ._common import database_url, schema_name
from ._parser import PROG, parse_args

#: Exit statuses.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_SCHEMA_TOO_NEW = SchemaTooNewError.exit_code  # 57, as Graphile Worker
EXIT_INTERRUPTED = 130

#: Seconds a finished command waits for task code that a forceful shutdown abandoned before
#: the process exits without it (Graphile Worker's command line waits one second too).
ABANDONED_CODE_GRACE = 1.0

logger = logging.getLogger("sqlalchemy_graphile.cli")

# A worker's progress is the point of running one, so `run` logs at INFO; the other
# commands (the demo prints its own story) log warnings only.
_CHATTY_COMMANDS = frozenset({"run"})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return the exit status:
    0 ok, 1 error (a one-line message; the traceback too with ``-v``), 2 usage error,
    57 the schema has a breaking migration newer than this version, 130 interrupted."""
    try:
        args = parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    verbose: bool = args.verbose
    _configure_logging(verbose, args.command in _CHATTY_COMMANDS, args.log_format)
    threads_before = set(threading.enumerate())
    try:
        with asyncio.Runner(loop_factory=_loop_factory(getattr(args, "uvloop", False))) as runner:
            try:
                status: int = runner.run(_handler(args.handler)(args))
            finally:
                _exit_if_code_lingers(runner.get_loop(), threads_before)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except SchemaTooNewError as error:
        _report(error, verbose)
        return EXIT_SCHEMA_TOO_NEW
    except Exception as error:
        _report(_connection_error(error, args), verbose)
        return EXIT_ERROR
    return status


def _exit_if_code_lingers(
    loop: asyncio.AbstractEventLoop, threads_before: set[threading.Thread]
) -> None:
    """Once the command is done: cancel what still runs on its event loop, and give it and
    the threads the command started :data:`ABANDONED_CODE_GRACE` seconds to end.

    Only task code that a forceful shutdown abandoned (a task that ignores cancellation, a
    plain ``def`` task blocked in its thread) can still be running; its job was failed and
    unlocked already. It would keep the process alive, so the process exits without it,
    with status 1, as Graphile Worker's command line does.
    """
    deadline = time.monotonic() + ABANDONED_CODE_GRACE
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.wait(pending, timeout=ABANDONED_CODE_GRACE))
    for task in pending:
        if task.done() and not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception while the command stopped",
                    "exception": task.exception(),
                    "task": task,
                }
            )
    loop.run_until_complete(loop.shutdown_default_executor())
    threads = [t for t in threading.enumerate() if t not in threads_before and not t.daemon]
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    tasks_left = sum(1 for task in pending if not task.done())
    threads_left = sum(1 for thread in threads if thread.is_alive())
    if tasks_left or threads_left:
        logger.warning(
            "task code abandoned by the forceful shutdown still runs (%d task(s), %d "
            "thread(s)); exiting without it",
            tasks_left,
            threads_left,
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_ERROR)


def _loop_factory(uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop factory when asked for (``run --uvloop``), else the default."""
    if not uvloop:
        return None
    try:
        import uvloop as module
    except ImportError:
        raise ConfigurationError(
            "--uvloop needs the uvloop package: pip install 'sqlalchemy-graphile[uvloop]'"
        ) from None
    factory: Callable[[], asyncio.AbstractEventLoop] = module.new_event_loop
    return factory


def _handler(name: str) -> Callable[[argparse.Namespace], Coroutine[Any, Any, int]]:
    module_name, _, function = name.partition(".")
    module = importlib.import_module(f"{__package__}._{module_name}")
    handler: Callable[[argparse.Namespace], Coroutine[Any, Any, int]] = getattr(module, function)
    return handler


def _configure_logging(verbose: bool, chatty: bool, log_format: str = "text") -> None:
    """Log to stderr, as text or (``log_format="json"``) one JSON object per line, unless
    the host (a test runner calling :func:`main`) already set up logging: then only the
    levels are set."""
    level = logging.DEBUG if verbose else logging.INFO if chatty else logging.WARNING
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        if log_format == "json":
            handler.setFormatter(JsonFormatter())
        else:
            handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    root.setLevel(level)
    if not verbose:
        # SQLAlchemy and asyncpg are noisy at INFO; our own loggers carry the story.
        for name in ("sqlalchemy", "asyncpg"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _connection_error(error: Exception, args: argparse.Namespace) -> Exception:
    """A connection that the command's own engine could not make, worded as a worker words
    one (:func:`connection_failure`: host, port, database and schema, the driver's error as
    the cause); any other error as it is."""
    if isinstance(error, GraphileWorkerError) or not isinstance(error, OSError):
        return error
    # Imported here: only a failed command needs them.
    from ..worker._connect import connection_failure, is_unreachable, resolve_database

    if not is_unreachable(error):
        return error
    try:
        database = resolve_database(database_url(args))
        schema = schema_name(args)
    except GraphileWorkerError:
        return error
    described = connection_failure(database, schema, error)
    described.__cause__ = error
    return described


def _report(error: BaseException, verbose: bool) -> None:
    if verbose:
        traceback.print_exception(error, file=sys.stderr)
    print(f"{PROG}: error: {_describe(error)}", file=sys.stderr)


def _describe(error: BaseException) -> str:
    if isinstance(error, pydantic.ValidationError):  # JobSpecValidationError included
        return f"invalid {error.title}: {validation_problems(error)}"
    if isinstance(error, GraphileWorkerError):
        return str(error)
    orig = _driver_error(error)
    if orig is not None:
        return f"database error: {_one_line(str(orig))}"
    return f"{type(error).__name__}: {_one_line(str(error))}"


def _driver_error(error: BaseException) -> BaseException | None:
    """The driver's error inside a SQLAlchemy ``DBAPIError``, else ``None``. (SQLAlchemy is
    not imported for this: a worker command that never loaded it cannot have raised one.)"""
    exc = sys.modules.get("sqlalchemy.exc")
    if exc is None or not isinstance(error, exc.DBAPIError):
        return None
    orig: BaseException | None = error.orig
    return orig


def _one_line(text: str) -> str:
    return " ".join(text.split())
