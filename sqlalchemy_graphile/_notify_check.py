"""Whether LISTEN/NOTIFY works end to end on a connection: a notification sent from another
connection must reach it.

Through a pooler in transaction mode (PgBouncer's ``pool_mode = transaction``) it silently
does not: ``LISTEN`` runs on whichever server connection serves that one statement, and a
notification for it later arrives on a server connection that is no longer the client's.
Nothing fails; the listener just never hears anything, and a worker then only finds new
jobs by polling. This module tells, in one round trip and a short wait. It imports only
asyncpg, so that the worker and ``sqlalchemy-graphile doctor`` can both use it.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, Protocol

import asyncpg

#: How long a notification may take to arrive before LISTEN counts as broken, in seconds.
DEFAULT_WAIT = 2.0


class _Executor(Protocol):
    async def execute(self, query: str, *args: Any) -> str: ...


async def notifications_arrive(
    listener: asyncpg.Connection,
    notifier: asyncpg.Connection | asyncpg.Pool | _Executor,
    *,
    within: float = DEFAULT_WAIT,
) -> bool:
    """``True`` when a ``NOTIFY`` sent through ``notifier`` reaches ``listener`` (which
    listens on a fresh channel of its own) within ``within`` seconds, else ``False``.

    ``notifier`` must be another connection than ``listener`` (or a pool whose connections
    are): a notification a session sends to itself is delivered with its own reply, even
    through a transaction pooler, so it proves nothing. Both should come from the same URL
    as the connections to be judged. The channel is unlistened before returning; database
    errors propagate.
    """
    channel = f"sg_listen_check_{secrets.token_hex(8)}"
    token = secrets.token_hex(8)
    loop = asyncio.get_running_loop()
    arrived: asyncio.Future[None] = loop.create_future()

    def received(_connection: object, _pid: int, _channel: str, payload: object) -> None:
        if payload == token and not arrived.done():
            arrived.set_result(None)

    await listener.add_listener(channel, received)
    try:
        await notifier.execute("select pg_notify($1, $2)", channel, token)
        try:
            await asyncio.wait_for(asyncio.shield(arrived), within)
        except TimeoutError:
            return False
        return True
    finally:
        await listener.remove_listener(channel, received)
