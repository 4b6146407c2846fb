"""The LISTEN connection: wake-ups for new jobs and warnings of breaking migrations.

One dedicated connection per continuous worker listens on ``jobs:insert`` and
``worker:migrate``. Notifications are hints: polling finds every job anyway.

* ``jobs:insert`` with ``{"count": n}``: wake up to ``n`` idle slots (``n <= 0`` is ignored;
  a payload that is not JSON counts as 1).
* ``worker:migrate`` with ``"breaking": true``: the schema changed under the worker; it
  shuts down gracefully and records exit code 57.

When the connection fails or is closed it is reconnected after
``ceil(J * min(60 s, 50 ms * e**attempts))`` (see :func:`listen_reconnect_delay`).
``pool:listen:success`` is emitted once both channels are listened to. After a
reconnection every idle slot fetches at once, to pick up jobs announced during the gap. A
periodic ``select 1`` with a timeout detects half-open connections.

Detect, don't assume: the first time it listens, the listener checks that a notification
sent through the worker's pool arrives (:func:`notifications_arrive`). Through a pooler in
transaction mode it never does; the listener then warns once, with the fix (``listen_url``),
emits ``pool:listen:unavailable``, closes its connection and stops: the worker finds new
jobs by polling.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from .._aio import wait_event
from .._notify_check import DEFAULT_WAIT, notifications_arrive
from ..events import ListenEvent, WorkerEvents
from ._retry import listen_reconnect_delay

logger = logging.getLogger("sqlalchemy_graphile.worker")

JOBS_CHANNEL = "jobs:insert"
MIGRATE_CHANNEL = "worker:migrate"

#: Seconds between liveness checks of an idle LISTEN connection, and their timeout.
PING_INTERVAL = 30.0
PING_TIMEOUT = 10.0
_RELEASE_TIMEOUT = 5.0


def parse_job_count(payload: str) -> int:
    """The number of jobs a ``jobs:insert`` payload announces; 1 when it does not say."""
    try:
        data = json.loads(payload)
    except ValueError:
        return 1
    count = data.get("count") if isinstance(data, dict) else None
    if isinstance(count, bool) or not isinstance(count, int | float):
        return 1
    return int(count) if count == count and abs(count) != float("inf") else 1


def parse_migration(payload: str) -> tuple[int | None, bool]:
    """``(migrationNumber, breaking)`` of a ``worker:migrate`` payload."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None, False
    if not isinstance(data, dict):
        return None, False
    number = data.get("migrationNumber")
    return (number if isinstance(number, int) else None), data.get("breaking") is True


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    return lambda _connection: event.set()


class Listener:
    """Keeps a LISTEN connection open until :meth:`stop`.

    ``on_jobs(count)`` and ``on_breaking_migration(number)`` are called on the event loop;
    nothing is delivered once ``is_shutting_down()`` returns true. ``on_reconnected()`` is
    called after every successful LISTEN but the first. With a ``notifier`` (the worker's
    pool), the first LISTEN is checked to receive a notification sent through it within
    ``check_within`` seconds; ``poll_interval`` is only named in the warning when it does
    not, and ``suggest_pooler`` adds ``pooler="transaction"`` to its fix.
    """

    def __init__(
        self,
        *,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        events: WorkerEvents,
        pool_id: str,
        on_jobs: Callable[[int], None],
        on_breaking_migration: Callable[[int | None], None],
        on_reconnected: Callable[[], None],
        is_shutting_down: Callable[[], bool],
        notifier: asyncpg.Pool | None = None,
        check_within: float = DEFAULT_WAIT,
        poll_interval: float | None = None,
        suggest_pooler: bool = False,
        ping_interval: float = PING_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
    ) -> None:
        self._connect = connect
        self._notifier = notifier
        self._check_within = check_within
        self._poll_interval = poll_interval
        self._suggest_pooler = suggest_pooler
        self._events = events
        self._pool_id = pool_id
        self._on_jobs = on_jobs
        self._on_breaking_migration = on_breaking_migration
        self._on_reconnected = on_reconnected
        self._is_shutting_down = is_shutting_down
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Connect in the background (reconnecting until stopped)."""
        self._task = asyncio.create_task(self._run(), name=f"{self._pool_id} listen")

    async def stop(self) -> None:
        """Stop listening and close the connection (a connection attempt that does not
        finish in time is abandoned)."""
        self._stopped.set()
        if self._task is None:
            return
        done, _ = await asyncio.wait({self._task}, timeout=2 * _RELEASE_TIMEOUT)
        if not done:
            self._task.cancel()
            await asyncio.wait({self._task})

    async def _run(self) -> None:
        attempts = 0
        listened_before = False
        checked = False
        while not self._stopped.is_set():
            self._emit("pool:listen:connecting", attempts=attempts)
            connection: asyncpg.Connection | None = None
            try:
                connection = await self._connect()
                lost = asyncio.Event()
                connection.add_termination_listener(_setter(lost))
                await connection.add_listener(JOBS_CHANNEL, self._notified)
                await connection.add_listener(MIGRATE_CHANNEL, self._notified)
                if not checked and self._notifier is not None:
                    arrived = await self._check(connection, self._notifier)
                    if arrived is None:  # stopped meanwhile
                        await self._release(connection)
                        return
                    checked = True
                    if not arrived:
                        self._unavailable()
                        await self._release(connection)
                        return
                    logger.info("LISTEN works: new jobs wake the worker at once")
                self._emit("pool:listen:success")
                attempts = 0
                if listened_before:
                    logger.info("LISTEN connection re-established")
                    self._on_reconnected()
                listened_before = True
                await self._watch(connection, lost)
            except Exception as error:
                if connection is not None:
                    await self._release(connection)
                if self._stopped.is_set():
                    return
                attempts += 1
                delay = listen_reconnect_delay(attempts)
                self._emit("pool:listen:error", error=error)
                logger.error("LISTEN connection failed (%s); reconnecting in %.3f s", error, delay)
                await self._sleep(delay)
                continue
            await self._release(connection)
            return

    async def _check(self, connection: asyncpg.Connection, notifier: asyncpg.Pool) -> bool | None:
        """Whether a notification sent through ``notifier`` reaches ``connection``; ``None``
        when the listener is stopped before the check ends. Database errors propagate."""
        check = asyncio.ensure_future(
            notifications_arrive(connection, notifier, within=self._check_within)
        )
        stopped = asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait({check, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not check.done():
                check.cancel()
                await asyncio.wait({check})
        return None if check.cancelled() else check.result()

    def _unavailable(self) -> None:
        polling = (
            f"every {self._poll_interval:g} s (poll_interval)"
            if self._poll_interval is not None
            else "by polling"
        )
        logger.warning(
            "LISTEN does not work on this connection: a test notification sent through the "
            "worker's connections did not arrive within %g s, as happens through a pooler in "
            "transaction mode. The worker finds new jobs only %s, not at once. Fix: give "
            "Worker(listen_url=...) or run --listen-url a URL of the same database that "
            "connects directly or through a pooler in session mode (see docs/poolers.md)%s",
            self._check_within,
            polling,
            ". If the database URL is such a pooler, also give pooler='transaction' (run "
            "--pooler transaction): prepared statements fail through it"
            if self._suggest_pooler
            else "",
        )
        self._emit("pool:listen:unavailable")

    async def _watch(self, connection: asyncpg.Connection, lost: asyncio.Event) -> None:
        """Return when stopped; raise when the connection is lost or stops answering."""
        while True:
            waiters = {
                asyncio.create_task(lost.wait()),
                asyncio.create_task(self._stopped.wait()),
            }
            try:
                await asyncio.wait(
                    waiters, timeout=self._ping_interval, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if self._stopped.is_set():
                return
            if lost.is_set():
                raise ConnectionError("the LISTEN connection was closed")
            await connection.fetchval("select 1", timeout=self._ping_timeout)

    async def _sleep(self, seconds: float) -> None:
        await wait_event(self._stopped, seconds)

    async def _release(self, connection: asyncpg.Connection) -> None:
        self._emit("pool:listen:release")
        try:
            async with asyncio.timeout(_RELEASE_TIMEOUT):
                if not connection.is_closed():
                    await connection.remove_listener(JOBS_CHANNEL, self._notified)
                    await connection.remove_listener(MIGRATE_CHANNEL, self._notified)
                    await connection.close()
        except Exception as error:
            logger.debug("closing the LISTEN connection failed: %s", error)
            connection.terminate()

    def _notified(self, _connection: object, _pid: int, channel: str, message: object) -> None:
        if self._stopped.is_set() or self._is_shutting_down():
            return
        payload = str(message)
        self._emit("pool:listen:notification", channel=channel, payload=payload)
        if channel == JOBS_CHANNEL:
            count = parse_job_count(payload)
            if count > 0:
                self._on_jobs(count)
        elif channel == MIGRATE_CHANNEL:
            number, breaking = parse_migration(payload)
            if breaking:
                self._on_breaking_migration(number)

    def _emit(
        self,
        name: str,
        *,
        attempts: int | None = None,
        error: BaseException | None = None,
        channel: str | None = None,
        payload: str | None = None,
    ) -> None:
        self._events.emit(
            ListenEvent(
                name=name,
                pool_id=self._pool_id,
                attempts=attempts,
                error=error,
                channel=channel,
                payload=payload,
            )
        )
