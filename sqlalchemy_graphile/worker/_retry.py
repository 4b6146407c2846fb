"""When and how long the worker waits before trying a statement or a connection again.

* :func:`with_retries`: Graphile Worker's policy for its internal statements:
  serialization failures and deadlocks (``40001``, ``40P01``) are retried after 50 ms to 5 s,
  "the database is starting up" (``57P03``) and unreachable / timed-out hosts after
  3 s to 120 s, up to 100 tries; any other error propagates at once.
* :func:`is_connection_error`: errors that mean "the database is not reachable right now",
  which the worker's loops wait out instead of stopping.
* The delays: jittered exponential backoff for retries and for the LISTEN reconnection.
"""

from __future__ import annotations

import asyncio
import errno
import math
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from .._backoff import Backoff

T = TypeVar("T")

#: The most tries :func:`with_retries` makes.
MAX_TRIES = 100


_CONFLICT = Backoff(0.05, 5.0)
_UNAVAILABLE = Backoff(3.0, 120.0)
_TRANSIENT_SQLSTATES = {"40001": _CONFLICT, "40P01": _CONFLICT, "57P03": _UNAVAILABLE}
_TRANSIENT_ERRNOS = {errno.EHOSTUNREACH: _UNAVAILABLE, errno.ETIMEDOUT: _UNAVAILABLE}


def transient_backoff(error: BaseException) -> Backoff | None:
    """The backoff to retry ``error`` with, or ``None`` if it is not transient."""
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate in _TRANSIENT_SQLSTATES:
        return _TRANSIENT_SQLSTATES[sqlstate]
    if isinstance(error, OSError) and error.errno in _TRANSIENT_ERRNOS:
        return _TRANSIENT_ERRNOS[error.errno]
    return None


async def with_retries(operation: Callable[[], Awaitable[T]], *, max_tries: int = MAX_TRIES) -> T:
    """Await ``operation()``, trying again after transient errors (see module docs)."""
    attempt = 0
    while True:
        try:
            return await operation()
        except Exception as error:
            backoff = transient_backoff(error)
            attempt += 1
            if backoff is None or attempt >= max_tries:
                raise
            await asyncio.sleep(backoff.delay(attempt - 1))


def is_connection_error(error: BaseException) -> bool:
    """Whether ``error`` means the database cannot be reached (connection refused or lost,
    server shutting down or starting up, network timeout)."""
    if isinstance(
        error, OSError | TimeoutError | asyncpg.InterfaceError | asyncpg.PostgresConnectionError
    ):
        return True
    sqlstate = getattr(error, "sqlstate", None)
    # 57P01-57P03: admin shutdown, crash shutdown, cannot connect now; 08xxx: connection.
    return isinstance(sqlstate, str) and (
        sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03")
    )


#: Backoff after failed fetches while the database is unreachable; capped further by the
#: poll interval.
FETCH_ERROR_BACKOFF = Backoff(0.1, 5.0, multiplier=2.0)

#: Backoff of writes (completions, failures) that wait for the database to come back.
WRITE_ERROR_BACKOFF = Backoff(0.1, 10.0, multiplier=2.0)


def listen_reconnect_delay(attempts: int, uniform: float | None = None) -> float:
    """Seconds before reconnecting the LISTEN connection after ``attempts`` failures:
    ``ceil(J * min(60 s, 50 ms * e**attempts))`` in milliseconds, ``J = 0.5 + sqrt(U) / 2``
    (weighted towards the longer end, so that many workers do not reconnect together)."""
    u = random.random() if uniform is None else uniform
    jitter = 0.5 + math.sqrt(u) / 2
    millis = math.ceil(jitter * min(60_000.0, 50.0 * math.exp(min(attempts, 20))))
    return millis / 1000.0


def reset_locked_delay(minimum: float, maximum: float, uniform: float | None = None) -> float:
    """Seconds until the next stale-lock sweep: uniform in [minimum, maximum], rounded up
    to the millisecond."""
    u = random.random() if uniform is None else uniform
    return math.ceil((minimum + u * (maximum - minimum)) * 1000.0) / 1000.0


def first_reset_locked_delay(maximum: float, uniform: float | None = None) -> float:
    """Seconds until the first sweep: uniform in [0, min(60 s, maximum)), so that workers
    started together do not sweep together."""
    u = random.random() if uniform is None else uniform
    return u * min(60.0, maximum)
