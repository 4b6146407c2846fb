"""``sqlalchemy-graphile doctor``: checks a deployment and explains, with a fix, what is wrong.

::

    from sqlalchemy_graphile.doctor import diagnose

    diagnosis = await diagnose("postgresql://app@db/app", workers=4, max_pool_size=10)
    for finding in diagnosis.findings:
        print(finding.status, finding.check, finding.summary, finding.fix)

The checks, each one :class:`Finding`:

* ``schema``: the ``migrations`` ledger is one this version can run on (installed by us,
  by Node's Graphile Worker 0.17 or by its Rust port, at revision 19 or 20);
* ``listen``: a ``NOTIFY`` sent through the URL reaches a ``LISTEN`` made through it (it
  silently does not through a pooler in transaction mode);
* ``connections``: ``max_connections`` leaves room for the workers' pools and the
  application's;
* ``transactions``: no session of the database has held a transaction open for long or sits
  idle in one (either holds back vacuum on the jobs table), and no prepared transaction is
  left over;
* ``jobs_table``: the jobs table is not full of dead rows;
* ``stale_jobs``: no task identifier has jobs that have waited long while none of its jobs
  run (no worker handles it, or none runs);
* ``clock``: this machine's clock agrees with the database's.

Only reads; nothing is changed. The connections it opens are named
``sqlalchemy-graphile-doctor``. Uses asyncpg alone (no SQLAlchemy).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg

from ._catalog import Statement, catalog_for
from ._catalog._health import HealthStatements
from ._identifiers import resolve_schema
from ._notify_check import notifications_arrive
from .errors import ConfigurationError, SchemaError
from .migrations import _ledger
from .migrations._ddl import SCHEMA_REVISION
from .migrations._recovery_ddl import RECOVERY_REVISION
from .worker._connect import resolve_database
from .worker._schema_check import read_ledger

Status = Literal["ok", "warning", "error", "skipped"]
#: The application name of the doctor's connections.
APPLICATION_NAME = "sqlalchemy-graphile-doctor"
#: Graphile Worker's default worker pool size.
DEFAULT_MAX_POOL_SIZE = 10


@dataclass(frozen=True)
class Finding:
    """The result of one check: its ``status``, a one-line ``summary``, what to do about it
    (``fix``; ``None`` when all is well) and the figures behind it (``details``)."""

    check: str
    status: Status
    summary: str
    fix: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Diagnosis:
    """Every finding, in the order the checks ran."""

    findings: tuple[Finding, ...]

    @property
    def status(self) -> Literal["healthy", "warnings", "errors"]:
        """``errors`` if any check found an error, else ``warnings`` if any warned, else
        ``healthy``."""
        statuses = {finding.status for finding in self.findings}
        if "error" in statuses:
            return "errors"
        return "warnings" if "warning" in statuses else "healthy"

    def finding(self, check: str) -> Finding:
        """The finding of the check called ``check``; ``KeyError`` if it did not run."""
        for finding in self.findings:
            if finding.check == check:
                return finding
        raise KeyError(check)


@dataclass(frozen=True)
class Limits:
    """When a finding becomes a warning or an error. Times are in seconds."""

    #: A transaction open for longer than this is reported.
    long_transaction: float = 300.0
    #: A session idle in a transaction for longer than this is reported.
    idle_in_transaction: float = 60.0
    #: The jobs table is reported when it holds at least this many dead rows...
    dead_rows: int = 10_000
    #: ... and they are at least this share of all its rows.
    dead_share: float = 0.2
    #: Jobs ready for longer than this, while none of their task runs, are reported.
    stale_job_age: float = 600.0
    #: Clock skew above this is a warning; above ``clock_skew_error``, an error.
    clock_skew_warning: float = 1.0
    clock_skew_error: float = 60.0
    #: How long a notification may take to arrive.
    listen_timeout: float = 2.0


Clock = Callable[[], datetime]


async def diagnose(
    database: str | None = None,
    *,
    schema: str | None = None,
    workers: int = 1,
    max_pool_size: int = DEFAULT_MAX_POOL_SIZE,
    app_connections: int = 0,
    limits: Limits | None = None,
    clock: Clock | None = None,
) -> Diagnosis:
    """Run every check against ``database`` (a URL; default ``$DATABASE_URL``) and
    ``schema``. ``workers`` worker processes of ``max_pool_size`` connections each (plus one
    LISTEN connection each) and ``app_connections`` more are what ``max_connections`` must
    allow. ``clock`` is this machine's clock (tests inject a skewed one).

    Raises :class:`ConfigurationError` for bad arguments (before connecting) and the
    driver's error when the database cannot be reached at all; a check that fails to run is
    reported as an ``error`` finding instead.
    """
    for name, value, minimum in (
        ("workers", workers, 0),
        ("max_pool_size", max_pool_size, 1),
        ("app_connections", app_connections, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigurationError(f"{name} must be an int of at least {minimum}, not {value!r}")
    schema = resolve_schema(schema)
    limits = limits or Limits()
    now = clock or (lambda: datetime.now(UTC))
    target = resolve_database(database)
    # No prepared statements: works through a pooler in transaction mode too.
    kwargs = target.asyncpg_kwargs(application_name=APPLICATION_NAME, prepared_statements=False)

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(**kwargs)

    sql = catalog_for(schema).health
    connection = await connect()
    try:
        checks: list[tuple[str, Callable[[], Awaitable[Finding]]]] = [
            ("schema", lambda: _schema(connection, sql)),
            ("listen", lambda: _listen(connection, connect, limits)),
            (
                "connections",
                lambda: _connections(connection, sql, workers, max_pool_size, app_connections),
            ),
            ("transactions", lambda: _transactions(connection, sql, limits)),
            ("jobs_table", lambda: _jobs_table(connection, sql, limits)),
            ("stale_jobs", lambda: _stale_jobs(connection, sql, limits)),
            ("clock", lambda: _clock(connection, sql, now, limits)),
        ]
        findings: list[Finding] = []
        for name, check in checks:
            if name in ("jobs_table", "stale_jobs") and findings[0].status == "error":
                findings.append(Finding(name, "skipped", "skipped: the schema is not usable"))
                continue
            try:
                findings.append(await check())
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as error:
                findings.append(
                    Finding(
                        name,
                        "error",
                        f"the check could not run: {type(error).__name__}: {error}",
                        "Check that the role may read pg_catalog and pg_stat_activity, and "
                        "that the database stays reachable.",
                    )
                )
        return Diagnosis(tuple(findings))
    finally:
        await connection.close()


# -- the checks -----------------------------------------------------------------------


async def _fetch(
    connection: asyncpg.Connection, statement: Statement, **values: Any
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await connection.fetch(
        statement.numbered, *statement.arguments(values)
    )
    return rows


async def _fetchrow(
    connection: asyncpg.Connection, statement: Statement, **values: Any
) -> asyncpg.Record | None:
    rows = await _fetch(connection, statement, **values)
    return rows[0] if rows else None


async def _schema(connection: asyncpg.Connection, sql: HealthStatements) -> Finding:
    schema = sql.schema
    state = await read_ledger(connection, schema)
    details: dict[str, Any] = {
        "schema": schema,
        "revision": state.latest,
        "latest_breaking": state.latest_breaking,
        "supported": SCHEMA_REVISION,
    }
    try:
        _ledger.check_compatible(state, schema)
    except SchemaError as error:
        return Finding("schema", "error", str(error).split(": run ", 1)[0], _schema_fix(error))
    features = await _fetchrow(connection, sql.schema_features)
    assert features is not None
    details["locking_add_jobs"] = bool(features["locking_add_jobs"])
    details["worker_recovery_table"] = bool(features["has_workers_table"])
    origin = (
        "with the Rust port's add_jobs (revision 19 of its migrations)"
        if details["locking_add_jobs"]
        else "with Graphile Worker's add_jobs (installed by us or by Node)"
    )
    revision = state.latest
    assert revision is not None
    if revision > RECOVERY_REVISION or (
        revision == RECOVERY_REVISION and not details["worker_recovery_table"]
    ):
        return Finding(
            "schema",
            "warning",
            f"schema {schema!r} is at revision {revision}, newer than this version knows "
            f"({RECOVERY_REVISION} with the worker-recovery objects); it is not marked "
            "breaking, so workers run",
            "Upgrade sqlalchemy-graphile to a version that knows this revision.",
            details,
        )
    if revision < RECOVERY_REVISION:
        return Finding(
            "schema",
            "warning",
            f"schema {schema!r} is at revision {revision}, {origin}, without the "
            "worker-recovery objects of revision 20: workers do not register, and the jobs "
            "of a killed worker stay locked for 4 hours",
            "Run `sqlalchemy-graphile migrate` (or `alembic upgrade head`) to add them; "
            "Graphile Worker 0.17 keeps running on the result.",
            details,
        )
    return Finding(
        "schema",
        "ok",
        f"schema {schema!r} is at revision {revision} with the worker-recovery objects, {origin}",
        details=details,
    )


def _schema_fix(error: SchemaError) -> str:
    text = str(error)
    if "is not installed" in text:
        return (
            "Install it: `sqlalchemy-graphile migrate`, `alembic upgrade head`, or "
            "`await WorkerUtils(engine).migrate()`."
        )
    if "breaking migration" in text:
        return "Upgrade sqlalchemy-graphile: the schema was migrated by a newer worker."
    return (
        f"Bring the schema to revision {SCHEMA_REVISION} with Graphile Worker 0.17 "
        "(`npx graphile-worker@0.17 --schema-only`), then run `sqlalchemy-graphile migrate`."
    )


async def _listen(
    connection: asyncpg.Connection,
    connect: Callable[[], Awaitable[asyncpg.Connection]],
    limits: Limits,
) -> Finding:
    listener = await connect()
    try:
        started = time.perf_counter()
        arrived = await notifications_arrive(listener, connection, within=limits.listen_timeout)
        elapsed = time.perf_counter() - started
    finally:
        await listener.close()
    if arrived:
        return Finding(
            "listen",
            "ok",
            f"a NOTIFY reached a LISTEN through this URL in {elapsed * 1000:.1f} ms",
            details={"seconds": elapsed},
        )
    return Finding(
        "listen",
        "error",
        f"a NOTIFY sent through this URL did not reach a LISTEN within "
        f"{limits.listen_timeout:g} s: workers on it will not hear of new jobs and only "
        "find them by polling (typically a pooler such as PgBouncer in transaction mode)",
        "Give workers a direct or session-mode URL (PgBouncer `pool_mode = session`) for "
        "their LISTEN connection (`Worker(listen_url=...)` / `run --listen-url`), or let "
        "them poll with a short poll interval; see docs/poolers.md.",
        {"timeout": limits.listen_timeout},
    )


async def _connections(
    connection: asyncpg.Connection,
    sql: HealthStatements,
    workers: int,
    max_pool_size: int,
    app_connections: int,
) -> Finding:
    row = await _fetchrow(connection, sql.connections)
    assert row is not None
    usable = row["max_connections"] - row["reserved"]
    needed = workers * (max_pool_size + 1) + app_connections
    details = {
        "max_connections": row["max_connections"],
        "superuser_reserved_connections": row["reserved"],
        "in_use": row["in_use"],
        "needed": needed,
        "workers": workers,
        "max_pool_size": max_pool_size,
        "app_connections": app_connections,
    }
    figures = (
        f"{workers} worker(s) x ({max_pool_size} + 1 LISTEN) + {app_connections} application "
        f"connection(s) = {needed}, of {usable} usable (max_connections "
        f"{row['max_connections']} - {row['reserved']} reserved; {row['in_use']} in use now)"
    )
    fix = (
        "Raise max_connections (needs a restart), lower the workers' max_pool_size, or put a "
        "pooler in front of the job connections (the LISTEN connection must bypass it)."
    )
    if needed > usable:
        return Finding("connections", "error", f"too many connections: {figures}", fix, details)
    if needed > 0.8 * usable:
        return Finding("connections", "warning", f"little headroom: {figures}", fix, details)
    return Finding("connections", "ok", figures, details=details)


async def _transactions(
    connection: asyncpg.Connection, sql: HealthStatements, limits: Limits
) -> Finding:
    sessions = [
        dict(row)
        for row in await _fetch(
            connection,
            sql.long_transactions,
            transaction_seconds=limits.long_transaction,
            idle_seconds=limits.idle_in_transaction,
        )
    ]
    prepared = [dict(row) for row in await _fetch(connection, sql.prepared_transactions)]
    details = {"sessions": sessions, "prepared_transactions": prepared}
    if not sessions and not prepared:
        return Finding(
            "transactions",
            "ok",
            f"no transaction older than {limits.long_transaction:g} s, none idle for more "
            f"than {limits.idle_in_transaction:g} s, no prepared transaction",
            details=details,
        )
    parts = [_describe_session(session) for session in sessions[:5]]
    parts += [f"prepared transaction {p['gid']!r} ({p['seconds']:.0f} s old)" for p in prepared]
    more = f" and {len(sessions) - 5} more" if len(sessions) > 5 else ""
    return Finding(
        "transactions",
        "warning",
        "transactions that hold back vacuum (dead job rows pile up until they end): "
        + "; ".join(parts)
        + more,
        "End them (`select pg_terminate_backend(pid)`; COMMIT or ROLLBACK PREPARED for "
        "prepared ones), fix the code that leaves them open, and set "
        "`idle_in_transaction_session_timeout` for application roles.",
        details,
    )


def _describe_session(session: Mapping[str, Any]) -> str:
    name = session["application_name"] or "no application_name"
    return (
        f"pid {session['pid']} ({session['usename']}, {name}) {session['state']}, "
        f"transaction open for {session['transaction_seconds']:.0f} s"
    )


async def _jobs_table(
    connection: asyncpg.Connection, sql: HealthStatements, limits: Limits
) -> Finding:
    schema = sql.schema
    row = await _fetchrow(connection, sql.jobs_table)
    if row is None:
        return Finding("jobs_table", "skipped", "no statistics for the jobs table yet")
    live, dead = row["live"], row["dead"]
    share = dead / (live + dead) if live + dead else 0.0
    last = row["last_vacuum"]
    details = {
        "live_rows": live,
        "dead_rows": dead,
        "dead_share": share,
        "bytes": row["bytes"],
        "last_vacuum": last.isoformat() if last is not None else None,
    }
    figures = (
        f"{live} live and {dead} dead rows ({share:.0%} dead), "
        f"{row['bytes'] / 1048576:.1f} MiB, last vacuumed "
        f"{last.isoformat(timespec='seconds') if last is not None else 'never'}"
    )
    if dead >= limits.dead_rows and share >= limits.dead_share:
        return Finding(
            "jobs_table",
            "warning",
            f"the jobs table is bloated: {figures}",
            f"Run `VACUUM (ANALYZE) {schema}._private_jobs`; end long transactions first (see "
            "the transactions check), and let autovacuum visit it sooner: "
            f"`ALTER TABLE {schema}._private_jobs SET (autovacuum_vacuum_scale_factor = "
            "0.01)`.",
            details,
        )
    return Finding("jobs_table", "ok", figures, details=details)


async def _stale_jobs(
    connection: asyncpg.Connection, sql: HealthStatements, limits: Limits
) -> Finding:
    rows = [
        dict(row)
        for row in await _fetch(connection, sql.stale_identifiers, seconds=limits.stale_job_age)
    ]
    details = {"identifiers": rows, "age": limits.stale_job_age}
    if not rows:
        return Finding(
            "stale_jobs",
            "ok",
            f"no task has jobs waiting for more than {limits.stale_job_age:g} s while none "
            "of its jobs runs",
            details=details,
        )
    listed = ", ".join(
        f"{row['task']!r} ({row['ready']} ready, the oldest due "
        f"{timedelta(seconds=round(row['oldest_seconds']))} ago)"
        for row in rows
    )
    return Finding(
        "stale_jobs",
        "warning",
        f"jobs that no worker seems to handle: {listed}",
        "Check that a running worker has a task with this IDENTIFIER (a typo, or a task "
        "removed from the worker's list?) and no forbidden flag these jobs carry; remove "
        "jobs nobody will run (`sqlalchemy-graphile list --identifier TASK`, then "
        "`fail` or `complete`).",
        details,
    )


async def _clock(
    connection: asyncpg.Connection, sql: HealthStatements, now: Clock, limits: Limits
) -> Finding:
    before = now()
    database = await connection.fetchval(sql.clock.numbered)
    after = now()
    round_trip = (after - before).total_seconds()
    midpoint = before + (after - before) / 2
    skew = (midpoint - database).total_seconds()  # > 0: this machine is ahead
    details = {"skew_seconds": skew, "uncertainty_seconds": abs(round_trip) / 2}
    direction = "ahead of" if skew > 0 else "behind"
    summary = f"this machine's clock is {abs(skew):.3f} s {direction} the database's"
    fix = (
        "Synchronise the clocks (NTP / chrony on both hosts). Skew shifts cron's schedule, "
        "`use_local_time` workers' idea of which jobs are due, and the queue-wait metric."
    )
    if abs(skew) > limits.clock_skew_error:
        return Finding("clock", "error", summary, fix, details)
    if abs(skew) > limits.clock_skew_warning:
        return Finding("clock", "warning", summary, fix, details)
    return Finding("clock", "ok", summary, details=details)


__all__ = ["APPLICATION_NAME", "Diagnosis", "Finding", "Limits", "diagnose"]
