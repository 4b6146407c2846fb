"""What the testing helpers run on: the test's own session or connection, sync or async.

Tests usually hold one connection with an outer transaction and bind their sessions to it
(``join_transaction_mode="create_savepoint"``), so that whatever the code under test writes
is rolled back at the end. A helper must read through that same connection to see those
uncommitted rows: it takes the session (or connection) and works on ``session.connection()``,
joining the transaction that is open there, like :class:`~sqlalchemy_graphile.JobHelpers`.
Work on an async session or connection runs through ``run_sync``, so each helper's logic
exists once, on a synchronous :class:`~sqlalchemy.Connection`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_scoped_session
from sqlalchemy.orm import Session, scoped_session

from ..errors import ConfigurationError

R = TypeVar("R")

#: The synchronous things a helper can read through.
SyncTarget = Session | Connection | scoped_session[Any]
#: The asynchronous ones; with them, a helper returns a coroutine to await.
AsyncTarget = AsyncSession | AsyncConnection | async_scoped_session[Any]


def is_async(target: object, helper: str) -> bool:
    """Whether ``target`` is one of the asynchronous targets (the helper then returns a
    coroutine); raises :class:`ConfigurationError`, naming ``helper``, if it is no target."""
    if isinstance(target, AsyncSession | AsyncConnection | async_scoped_session):
        return True
    if isinstance(target, Session | Connection | scoped_session):
        return False
    raise _not_a_target(target, helper)


def run_on(
    target: SyncTarget | AsyncTarget, work: Callable[[Connection], R], helper: str
) -> R | Coroutine[Any, Any, R]:
    """Run ``work`` on the connection of ``target`` now (sync), or return the coroutine that
    runs it (async). Raises :class:`ConfigurationError` for anything else, naming ``helper``.
    """
    if isinstance(target, scoped_session | async_scoped_session):
        target = target()
    if isinstance(target, Session):
        return work(target.connection())
    if isinstance(target, Connection):
        return work(target)
    if isinstance(target, AsyncSession):
        return target.run_sync(lambda session: work(session.connection()))
    if isinstance(target, AsyncConnection):
        return target.run_sync(work)
    raise _not_a_target(target, helper)


async def connection_of(
    target: SyncTarget | AsyncTarget, helper: str
) -> Connection | AsyncConnection:
    """The connection ``target`` works on, its transaction begun if none was open (a
    session's ``connection()``). Raises :class:`ConfigurationError` for anything else,
    naming ``helper``."""
    if isinstance(target, scoped_session | async_scoped_session):
        target = target()
    if isinstance(target, Session):
        return target.connection()
    if isinstance(target, AsyncSession):
        return await target.connection()
    if isinstance(target, Connection | AsyncConnection):
        return target
    raise _not_a_target(target, helper)


def _not_a_target(target: object, helper: str) -> ConfigurationError:
    return ConfigurationError(
        f"{helper}() works through a Session, AsyncSession, Connection or AsyncConnection, "
        f"not {type(target).__name__}"
    )
