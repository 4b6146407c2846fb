"""The ledger: what each execution of a test task did, as seen by the database.

Test tasks (``tests/chaos/_tasks.py``) write one ``start`` row when they begin and one
``finish`` row when they end, each on a connection of its own in autocommit mode, so a row
is durable whatever happens to the worker afterwards. ``at`` is the server's
``clock_timestamp()`` (or, for a finish recorded late, the worker's clock when the task
ended). A finish may add a row to ``effects``, whose unique ``idempotency_key`` (the job id)
shows how many distinct side effects happened however often a job ran.

A test holds tasks at a named gate until it calls :func:`open_gate`: a row in ``gates``
and a notification on ``chaos_gates``, which :func:`wait_for_gate` listens for.

The checks below read the ledger and the job table back for the assertions:
:func:`no_loss`, :func:`dupes` (starts minus one) and :func:`locked_by_dead`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Iterable
from datetime import datetime

import asyncpg
import psycopg

logger = logging.getLogger("tests.chaos.ledger")

#: Where the tasks find the ledger: a ``postgresql://`` URL of the test database.
LEDGER_URL_ENV = "SG_CHAOS_LEDGER_URL"

SCHEMA_DDL = """
create schema chaos;
create table chaos.ledger (
    id bigserial primary key,
    event text not null check (event in ('start', 'finish')),
    job_id bigint not null,
    job_key text,
    attempt int not null,
    pid int not null,
    tag text not null default '',
    at timestamptz not null default clock_timestamp()
);
create index on chaos.ledger (job_id);
create table chaos.effects (
    idempotency_key text primary key,
    job_id bigint not null,
    at timestamptz not null default clock_timestamp()
);
create table chaos.gates (name text primary key);
"""

#: The channel on which :func:`open_gate` announces a gate's name.
GATE_CHANNEL = "chaos_gates"

_RECORD = """
insert into chaos.ledger (event, job_id, job_key, attempt, pid, tag, at)
values ($1, $2, $3, $4, $5, $6, coalesce($7, clock_timestamp()))
"""
_RECORD_WITH_EFFECT = f"""
with effect as (
    insert into chaos.effects (idempotency_key, job_id) values ($2::bigint::text, $2)
    on conflict (idempotency_key) do nothing
)
{_RECORD}
"""

#: How long a late finish keeps trying to reach the database.
LATE_WRITE_DEADLINE = 120.0

_late_writes: set[asyncio.Task[None]] = set()


# -- writing (in the worker processes) -----------------------------------------------


async def record(
    event: str,
    *,
    job_id: int,
    job_key: str | None,
    attempt: int,
    tag: str,
    effect: bool = False,
    at: datetime | None = None,
) -> None:
    """Write one ledger row (and with ``effect``, the job's effects row) in its own
    autocommit transaction on a new connection; database errors propagate.

    The test server is local and plain: ``ssl=False`` spares each attempt the TLS set-up,
    whose CPU cost would otherwise count against the worker in the outage tests."""
    connection = await asyncpg.connect(os.environ[LEDGER_URL_ENV], ssl=False)
    try:
        await connection.execute(
            _RECORD_WITH_EFFECT if effect else _RECORD,
            event,
            job_id,
            job_key,
            attempt,
            os.getpid(),
            tag,
            at,
        )
    finally:
        await connection.close()


async def wait_for_gate(name: str) -> None:
    """Wait until the test opens gate ``name``, listening on a new connection of its own
    (from before it reads ``gates``, so an opening in between is not missed)."""
    opened = asyncio.Event()

    def on_open(_connection: object, _pid: int, _channel: str, payload: object) -> None:
        if payload == name:
            opened.set()

    connection = await asyncpg.connect(os.environ[LEDGER_URL_ENV], ssl=False)
    try:
        await connection.add_listener(GATE_CHANNEL, on_open)
        if not await connection.fetchval(
            "select exists (select from chaos.gates where name = $1)", name
        ):
            await opened.wait()
    finally:
        await connection.close()


def record_later(**row: object) -> None:
    """Write a row in the background, trying again until the database is reachable (at
    most :data:`LATE_WRITE_DEADLINE` seconds): for tasks that end while it is down."""
    task = asyncio.ensure_future(_record_eventually(row))
    _late_writes.add(task)
    task.add_done_callback(_late_writes.discard)


async def _record_eventually(row: dict[str, object]) -> None:
    deadline = asyncio.get_running_loop().time() + LATE_WRITE_DEADLINE
    while True:
        try:
            await record(**row)  # type: ignore[arg-type]
            return
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            if asyncio.get_running_loop().time() > deadline:
                logger.error("giving up on a ledger row %s: %s", row, error)
                return
            await asyncio.sleep(0.5)


# -- reading (in the tests) ----------------------------------------------------------


def open_gate(db: psycopg.Connection, name: str) -> None:
    """Let the tasks waiting at gate ``name`` go on, and those that reach it later pass."""
    db.execute(
        "with opened as (insert into chaos.gates (name) values (%(name)s))"
        " select pg_notify(%(channel)s, %(name)s)",
        {"name": name, "channel": GATE_CHANNEL},
    )


def starts(db: psycopg.Connection) -> Counter[int]:
    """How many times each job started."""
    return _count(db, "start")


def finishes(db: psycopg.Connection) -> Counter[int]:
    """How many times each job finished."""
    return _count(db, "finish")


def _count(db: psycopg.Connection, event: str) -> Counter[int]:
    rows = db.execute(
        "select job_id, count(*) from chaos.ledger where event = %s group by job_id", (event,)
    ).fetchall()
    return Counter({job_id: count for job_id, count in rows})


def attempts_started(db: psycopg.Connection, job_id: int) -> list[int]:
    """The attempt numbers job ``job_id`` started with, in order."""
    rows = db.execute(
        "select attempt from chaos.ledger where job_id = %s and event = 'start' order by id",
        (job_id,),
    ).fetchall()
    return [attempt for (attempt,) in rows]


def no_loss(db: psycopg.Connection, job_ids: Iterable[int]) -> list[int]:
    """The committed jobs that are lost: no ``finish`` row and not permanently failed. An
    empty list is the at-least-once guarantee holding."""
    finished = finishes(db)
    dead = {
        job_id
        for (job_id,) in db.execute(
            "select id from graphile_worker._private_jobs where attempts >= max_attempts"
        ).fetchall()
    }
    return sorted(i for i in job_ids if not finished[i] and i not in dead)


def dupes(db: psycopg.Connection, job_id: int) -> int:
    """How many times job ``job_id`` ran more than once (starts minus one; -1: never ran)."""
    return starts(db)[job_id] - 1


def effects(db: psycopg.Connection) -> int:
    """The number of distinct side effects recorded."""
    (count,) = db.execute("select count(*) from chaos.effects").fetchone()  # type: ignore[misc]
    return int(count)


def locked_by_dead(db: psycopg.Connection, dead_pool_ids: Iterable[str]) -> int:
    """Jobs and named queues still locked by workers whose processes have exited."""
    ids = list(dead_pool_ids)
    (count,) = db.execute(
        "select (select count(*) from graphile_worker._private_jobs"
        "        where locked_by = any(%(ids)s))"
        " + (select count(*) from graphile_worker._private_job_queues"
        "    where locked_by = any(%(ids)s))",
        {"ids": ids},
    ).fetchone()  # type: ignore[misc]
    return int(count)
