""":class:`WorkerUtils`' adds on the asyncpg connection under an asyncpg engine.

An add through SQLAlchemy pays its result layer and a greenlet switch per statement. When
the engine's driver is asyncpg, :func:`add_on_engine` takes a connection of the engine's
own pool, and runs the add's :data:`~sqlalchemy_graphile._sql_jobs.Routine` on the asyncpg
connection inside it, as the worker's job store does
(:func:`~sqlalchemy_graphile._store._asyncpg.run_started_routine`): no second pool, and
the engine's connect arguments (a pooler's unnamed statements included) apply as they are.

An add that writes with its first statement alone runs without ``BEGIN``: that statement
commits on its own, in one round trip, and whatever follows it reads names or repeats an
add that wrote nothing (:attr:`~sqlalchemy_graphile._operations.JobAdd.needs_transaction`).
Any other add runs between ``BEGIN`` and ``COMMIT``. Either way the add has committed, as
a whole, when the call returns, or nothing of it has.

Database errors are raised as the engine would raise them: asyncpg's error becomes the
dialect's DB-API error inside SQLAlchemy's :class:`~sqlalchemy.exc.DBAPIError` (a missing
schema :class:`SchemaNotInstalledError`), and a connection that broke is invalidated, so
the pool never hands it out again.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from ._catalog._statement import Call
from ._operations import JobAdd, raise_database_error
from ._sql_jobs import Routine
from ._store._asyncpg import end_transaction, run_started_routine

T = TypeVar("T")


def runs_on_asyncpg(engine: AsyncEngine) -> bool:
    """Whether ``engine`` connects with asyncpg, so that :func:`add_on_engine` can run."""
    return engine.dialect.driver == "asyncpg"


async def add_on_engine(engine: AsyncEngine, add: JobAdd[T]) -> T:
    """Run ``add`` on the asyncpg connection of one of ``engine``'s pooled connections,
    committed when this returns (see the module docstring). An add with nothing to write
    (an empty bulk add) takes no connection. Raises what :class:`WorkerUtils`' adds raise
    on SQLAlchemy: :class:`SchemaNotInstalledError`, or the :class:`DBAPIError` of the
    statement that failed."""
    routine = add.routine()
    try:
        call = next(routine)
    except StopIteration as finished:
        result: T = finished.value
        return result
    # The pooled connection itself, without a SQLAlchemy Connection around it: its
    # checkout and check-in are all the add needs from the engine (about 80 microseconds
    # less per add than engine.connect()). The pool's events still run.
    pooled = await engine.raw_connection()
    driver: Any = pooled.driver_connection
    try:
        try:
            if add.needs_transaction:
                return await _in_transaction(driver, routine, call)
            return await run_started_routine(driver, routine, call)
        except Exception as error:
            translated = _as_dbapi_error(engine.dialect, pooled, error)
            if translated is None:
                raise
            raise_database_error(translated, add.schema)
        except BaseException:
            # Cancelled in the middle of a statement: the connection may still be busy
            # with it, so it is closed (and below, left out of the pool).
            driver.terminate()
            raise
    finally:
        if driver.is_closed():
            await greenlet_spawn(pooled.invalidate)
        await greenlet_spawn(pooled.close)


async def _in_transaction(driver: Any, routine: Routine[T], call: Call) -> T:
    await driver.execute("begin")
    try:
        result = await run_started_routine(driver, routine, call)
        await driver.execute("commit")
    except BaseException as error:
        await end_transaction(driver, error)
        raise
    return result


def _as_dbapi_error(
    dialect: Dialect, pooled: PoolProxiedConnection, error: Exception
) -> DBAPIError | None:
    """``error`` (raised by asyncpg) as SQLAlchemy raises it for the same statement: the
    dialect's translation inside a :class:`DBAPIError`; ``None`` for an error SQLAlchemy
    would not wrap either."""
    base = dialect.loaded_dbapi.Error
    adapted = pooled.dbapi_connection
    translate = getattr(adapted, "_handle_exception", None)
    if translate is None:
        return None
    try:
        translate(error)  # the translation the dialect's cursor applies; always raises
    except Exception as dbapi_error:
        translated = dbapi_error
    else:  # pragma: no cover - the dialect's translation always raises
        return None
    if not isinstance(translated, base):
        return None
    disconnected = dialect.is_disconnect(translated, adapted, None)
    wrapped = DBAPIError.instance(
        None, None, translated, base, connection_invalidated=disconnected, dialect=dialect
    )
    if not isinstance(wrapped, DBAPIError):  # pragma: no cover - a DB-API error wraps so
        return None
    wrapped.__cause__ = translated
    return wrapped
