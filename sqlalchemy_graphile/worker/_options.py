"""The worker's options, declared once: each is one field of :class:`WorkerOptions`.

A field declares an option's name, type, default, bounds (pydantic constraints or a
validator), documentation (``description``), and whether the ``run`` command has a flag for
it (:class:`Flag`) or why not (:class:`NoFlag`). From these fields come:

* the checks of ``Worker(...)``: :meth:`WorkerOptions.build` validates its keywords and
  raises :class:`ConfigurationError` naming each bad option (:class:`InvalidTaskError`,
  :class:`InvalidIdentifierError` or :class:`CrontabError` for a bad task class, schema name
  or crontab), before anything connects;
* the ``run`` command's flags, with their defaults and help (:func:`option_flags`, read by
  ``cli/_parser.py``); a value a flag's option refuses is a usage error;
* the list of options in :class:`Worker`'s docstring (:func:`describe_options`).

Adding an option:

1. add a field to :class:`WorkerOptions` with its default, bounds, ``description`` and a
   :class:`Flag` (or a :class:`NoFlag` saying why the command line has none); give it a
   validator if pydantic's types do not say everything, and check it in
   :meth:`WorkerOptions._check_together` if its bounds depend on another option;
2. add the keyword, with the same default, to ``Worker.__init__`` (whose signature stays
   explicit, for its users and type checkers): ``tests/unit/test_worker_options.py`` fails
   until the signature, the model and the ``run`` flags agree;
3. read it where it is used, as ``options.<name>``.

Every time is in seconds.
"""

from __future__ import annotations

import inspect
import math
import re
import textwrap
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Self, cast, get_args

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic.fields import FieldInfo

from .._identifiers import resolve_schema
from .._plugins import check_plugins
from .._poolers import Pooler, check_pooler
from .._recovery import DEFAULT_RESILIENT_FLAGS, SweepSettings
from .._validation import validation_problems
from ..context import extension_map
from ..cron import CronItem, crontab_items
from ..errors import ConfigurationError, GraphileWorkerError
from ..hooks import WorkerPlugin
from ..tasks import AnyTaskType, check_task_type

#: A static list of flags, or a function (sync or async) returning one; ``None`` = none.
ForbiddenFlagsResult = Sequence[str] | None
ForbiddenFlags = (
    Sequence[str] | Callable[[], ForbiddenFlagsResult | Awaitable[ForbiddenFlagsResult]] | None
)

#: Graphile Worker's default pool size.
DEFAULT_MAX_POOL_SIZE = 10
#: Seconds between two checks for ready jobs whose task no worker seems to handle.
DEFAULT_UNHANDLED_INTERVAL = 300.0


@dataclass(frozen=True, slots=True)
class RefetchDelay:
    """The local queue's refetch delay (``Worker(local_queue_refetch_delay=...)``).

    After a fetch that found ``threshold`` jobs or fewer (and was not full), the local queue
    waits ``duration`` seconds (times a random factor from 0.5 to 1.5) before it fetches
    again, so that many idle workers do not all hammer the database. Announcements of new
    jobs that arrive meanwhile are counted; once their count reaches a random number below
    ``max_abort_threshold`` (default: five times the local queue size), the delay is cut
    short and a fetch happens at once. ``duration`` must not exceed ``poll_interval``.
    """

    duration: float
    threshold: int = 0
    max_abort_threshold: int | None = None


@dataclass(frozen=True)
class Flag:
    """The option is a flag of the ``run`` command.

    ``names`` default to ``--<option-name>``, or ``--no-<option-name>`` for an option that
    is on by default. ``help`` defaults to the first sentence of the option's description;
    the default value is added to it unless it is ``None`` (the help then says what that
    means). ``parse`` turns the flag's text into a value (default: the option's ``int`` or
    ``float`` type); ``repeat`` makes a flag that may be given several times, collected in
    a list.
    """

    names: tuple[str, ...] = ()
    metavar: str | None = None
    help: str | None = None
    parse: Callable[[str], Any] | None = None
    repeat: bool = False


@dataclass(frozen=True)
class NoFlag:
    """The option has no flag of its own on the ``run`` command, for ``reason``."""

    reason: str


@dataclass(frozen=True)
class OptionFlag:
    """One ``run`` flag, as :func:`option_flags` derives it from a :class:`WorkerOptions`
    field: the arguments of ``ArgumentParser.add_argument``."""

    option: str
    names: tuple[str, ...]
    help: str
    default: Any
    #: ``"store_true"``, ``"store_false"``, ``"append"`` or ``"store"``.
    action: str
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None


# -- validators of the options pydantic's types do not describe --------------------------


def task_map(tasks: object) -> dict[str, AnyTaskType]:
    """Index task classes by identifier; a repeated identifier is a
    :class:`ConfigurationError`, a class that is not a task an :class:`InvalidTaskError`."""
    if isinstance(tasks, str | bytes) or not isinstance(tasks, Iterable):
        raise ConfigurationError("must be an iterable of Task / BatchTask classes")
    by_identifier: dict[str, AnyTaskType] = {}
    for task_type in tasks:
        checked = check_task_type(task_type)
        identifier = checked.task_identifier()
        if identifier in by_identifier:
            other = by_identifier[identifier]
            raise ConfigurationError(
                f"task identifier {identifier!r} is registered twice "
                f"({other.__module__}.{other.__qualname__} and "
                f"{checked.__module__}.{checked.__qualname__}); identifiers must be unique"
            )
        by_identifier[identifier] = checked
    if not by_identifier:
        raise ConfigurationError("must not be empty: give the worker at least one task class")
    return by_identifier


def _extensions(extensions: object) -> Mapping[type, object]:
    if isinstance(extensions, str | bytes) or not isinstance(extensions, Iterable):
        raise ConfigurationError("must be an iterable of objects")
    return extension_map(extensions)


def _forbidden_flags(option: object) -> ForbiddenFlags:
    if option is None or callable(option):
        return cast(ForbiddenFlags, option)  # a function's result is checked at each call
    return tuple(
        _flag_list(
            option,
            not_a_list="must be None, a list of strings or a function returning one, not a",
            bad_flag="contains a flag that is not a str",
        )
    )


def _flag_list(value: object, *, not_a_list: str, bad_flag: str) -> list[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ConfigurationError(f"{not_a_list} {type(value).__name__}")
    flags = list(value)
    for flag in flags:
        if not isinstance(flag, str):
            raise ConfigurationError(f"{bad_flag}: {flag!r}")
    return flags


async def resolve_forbidden_flags(option: ForbiddenFlags) -> list[str] | None:
    """The forbidden flags for the next fetch (calling and awaiting the option if it is a
    function). Raises :class:`ConfigurationError` for a result that is not ``None`` or a
    list of strings."""
    if option is None:
        return None
    value: Any = option
    if callable(option):
        value = option()
        if inspect.isawaitable(value):
            value = await value
        if value is None:
            return None
    return _flag_list(
        value,
        not_a_list="forbidden_flags() returned something that is not None or a list of strings: a",
        bad_flag="forbidden_flags() returned a flag that is not a str",
    )


def _listen_url(value: object) -> str | None:
    if value is None or (isinstance(value, str) and value):
        return value
    raise ConfigurationError(f"must be None or a database URL, not {value!r}")


def _minus_one_is_off(value: object) -> object:
    """Graphile Worker's ``-1`` for "off", as ``None``."""
    return None if value == -1 and not isinstance(value, bool) else value


def _refetch_delay(value: object) -> RefetchDelay | None:
    """A number of seconds or a :class:`RefetchDelay`, with its parts checked; the bounds
    that depend on other options are checked by :meth:`WorkerOptions._check_together`."""
    if value is None:
        return None
    if not isinstance(value, RefetchDelay):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigurationError(
                f"must be None, a number of seconds or a RefetchDelay, not {value!r}"
            )
        value = RefetchDelay(duration=value)
    duration = value.duration
    if isinstance(duration, bool) or not isinstance(duration, int | float):
        raise ConfigurationError(f"duration must be a number of seconds, not {duration!r}")
    if not math.isfinite(duration) or duration < 0:
        raise ConfigurationError(f"duration must be a finite number >= 0, not {duration!r}")
    threshold = value.threshold
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
        raise ConfigurationError(f"threshold must be an int of at least 0, not {threshold!r}")
    abort = value.max_abort_threshold
    if abort is not None and (isinstance(abort, bool) or not isinstance(abort, int) or abort < 1):
        raise ConfigurationError(
            f"max_abort_threshold must be None or an int of at least 1, not {abort!r}"
        )
    return RefetchDelay(float(duration), threshold, abort)


def _identifier_set(value: object) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ConfigurationError(f"must be None or a list of task identifiers, not {value!r}")
    identifiers = list(value)
    for identifier in identifiers:
        if not isinstance(identifier, str) or not identifier:
            raise ConfigurationError(f"must hold non-empty task identifiers, not {identifier!r}")
    return frozenset(identifiers)


def _resilient_flags(value: object) -> tuple[str, ...]:
    """A list of flags; ``None`` (what the command line passes without the flag) is the
    default, ``("infrastructure_resilient",)``."""
    if value is None:
        return DEFAULT_RESILIENT_FLAGS
    return tuple(
        _flag_list(value, not_a_list="must be a list of strings, not a", bad_flag="holds a non-str")
    )


_PROMETHEUS_HINT = "needs the prometheus extra: pip install 'sqlalchemy-graphile[prometheus]'"


def _prometheus_extra() -> Any:
    """The ``prometheus`` module, imported now; :class:`ConfigurationError` without the
    extra."""
    try:
        from .. import prometheus
    except ImportError:
        raise ConfigurationError(f"metrics {_PROMETHEUS_HINT}") from None
    return prometheus


def _metrics(value: object) -> object:
    """``None``, or a ``WorkerMetrics`` (the ``prometheus`` extra is imported only then)."""
    if value is None:
        return None
    if not isinstance(value, _prometheus_extra().WorkerMetrics):
        raise ConfigurationError(f"must be a WorkerMetrics, not {type(value).__name__}")
    return value


def _default_schema() -> str:
    return resolve_schema(None)


# -- the options ---------------------------------------------------------------------------

#: The shortest interval (poll, sweep, time to live) in seconds.
MIN_INTERVAL = 0.001


@pydantic_dataclass(
    frozen=True, kw_only=True, config=ConfigDict(strict=True, arbitrary_types_allowed=True)
)
class WorkerOptions:
    """The options of a :class:`Worker`, validated (Graphile Worker's, in snake_case).

    Build it with :meth:`build`; ``Worker.options`` holds the worker's.
    """

    tasks: Annotated[
        Mapping[str, AnyTaskType],
        PlainValidator(task_map),
        NoFlag("`run --tasks MODULE` names modules, and the command line loads the classes"),
    ] = Field(
        description="The Task / BatchTask classes to run (any iterable); two with one "
        "identifier are a ConfigurationError."
    )
    concurrency: Annotated[int, Flag(("-j", "--jobs"), metavar="N")] = Field(
        1,
        ge=1,
        description="Jobs run at once. Async tasks run on the event loop, sync tasks in a "
        "thread pool of this size.",
    )
    schema: Annotated[
        str, PlainValidator(resolve_schema), NoFlag("the global -s/--schema option sets it")
    ] = Field(
        default_factory=_default_schema,
        description="The schema of the job queue (default $GRAPHILE_WORKER_SCHEMA or "
        "graphile_worker).",
    )
    poll_interval: Annotated[float, Flag(metavar="SECONDS")] = Field(
        2.0,
        ge=MIN_INTERVAL,
        allow_inf_nan=False,
        description="How often an idle slot looks for jobs. New jobs announced by NOTIFY are "
        "picked up at once.",
    )
    extensions: Annotated[
        Mapping[type, object],
        PlainValidator(_extensions),
        NoFlag("extensions are objects, given in code"),
    ] = Field(
        default_factory=dict,
        description="Objects tasks reach with ctx.get_ext(Type), at most one per type.",
    )
    plugins: Annotated[
        tuple[WorkerPlugin, ...],
        PlainValidator(check_plugins),
        NoFlag("`run --plugin MODULE:NAME` loads plugin objects from code"),
    ] = Field(
        (),
        description="WorkerPlugin instances whose hooks run around each job (before_job_run, "
        "after_job_run) and on each job the worker's tasks add (before_job_schedule); see "
        "docs/hooks.md.",
    )
    forbidden_flags: Annotated[
        ForbiddenFlags,
        PlainValidator(_forbidden_flags),
        Flag(
            ("--forbidden-flag",),
            metavar="FLAG",
            help="do not run jobs carrying this flag (repeatable)",
            repeat=True,
        ),
    ] = Field(
        None,
        description="Jobs carrying any of these flags are skipped: None, a list of flags, or "
        "a function (sync or async) returning None or a list, called before every fetch.",
    )
    listen: Annotated[
        bool, Flag(help="do not LISTEN for new jobs, only poll (for poolers that cannot LISTEN)")
    ] = Field(
        True,
        description="Whether to LISTEN for new jobs; False for poolers that cannot LISTEN "
        "(the worker then polls only).",
    )
    listen_url: Annotated[
        str | None,
        PlainValidator(_listen_url),
        Flag(
            metavar="URL",
            help="LISTEN on a connection to this URL (direct to PostgreSQL, or a pooler in "
            "session mode) instead of the database URL",
        ),
    ] = Field(
        None,
        description="Where the LISTEN connection connects, when the database URL is a pooler "
        "in transaction mode, through which LISTEN cannot work: a URL of the same database, "
        "direct or through a pooler in session mode (None: the database URL). The worker "
        "checks at start that notifications arrive, and warns when they do not.",
    )
    use_local_time: Annotated[bool, Flag()] = Field(
        False,
        description="Decide which jobs are due by this machine's clock, not the database's.",
    )
    graceful_shutdown_abort_timeout: Annotated[float, Flag(metavar="SECONDS")] = Field(
        5.0,
        ge=0.0,
        allow_inf_nan=False,
        description="After a graceful shutdown begins, wait this long, then set ctx.abort_signal.",
    )
    handle_signals: Annotated[
        bool, NoFlag("the command line always shuts down on SIGINT and SIGTERM")
    ] = Field(
        True,
        description="On the main thread, SIGINT, SIGTERM, SIGHUP and SIGUSR2 shut the worker "
        "down gracefully; a second signal fails running jobs and stops.",
    )
    max_pool_size: Annotated[int | None, Flag(("-m", "--max-pool-size"), metavar="N")] = Field(
        None,
        ge=1,
        description="Connections for running jobs (default: the larger of 10 and concurrency).",
    )
    min_reset_locked_interval: Annotated[float, Flag(metavar="SECONDS")] = Field(
        480.0,
        ge=MIN_INTERVAL,
        allow_inf_nan=False,
        description="The shortest interval between sweeps of locks older than four hours.",
    )
    max_reset_locked_interval: Annotated[float, Flag(metavar="SECONDS")] = Field(
        600.0,
        ge=MIN_INTERVAL,
        allow_inf_nan=False,
        description="The longest interval between sweeps of locks older than four hours.",
    )
    prepared_statements: Annotated[
        bool, Flag(help="do not prepare statements (for poolers in transaction mode)")
    ] = Field(
        True,
        description="Whether to prepare named statements (False: unnamed statements only; "
        "pooler='transaction' implies it).",
    )
    pooler: Annotated[
        Pooler | None,
        PlainValidator(check_pooler),
        Flag(
            metavar="MODE",
            help="the database URL is a pooler in this mode: 'transaction' (PgBouncer's "
            "pool_mode = transaction) keeps every statement and setting within a transaction",
        ),
    ] = Field(
        None,
        description="'transaction' when the database URL is a pooler in transaction mode: no "
        "named prepared statements on any of the worker's connections (its own and the "
        "engine it makes for ctx.add_job), settings only per transaction. None: a direct "
        "connection or a pooler in session mode. LISTEN cannot work through a pooler in "
        "transaction mode; give listen_url.",
    )
    crontab: Annotated[
        tuple[CronItem, ...],
        PlainValidator(crontab_items),
        NoFlag("`run --crontab PATH` reads the crontab text from a file"),
    ] = Field(
        (),
        description="Recurring jobs, as crontab text (see parse_crontab) or a list of "
        "CronItem; scheduled by run() on this machine's clock, not by run_once(). A bad "
        "line or item raises CrontabError.",
    )
    local_queue_size: Annotated[
        int | None,
        BeforeValidator(_minus_one_is_off),
        Flag(metavar="N", help="fetch N jobs at a time into a local queue (default -1: off)"),
    ] = Field(
        None,
        ge=1,
        description="Fetch this many jobs at once into a local queue that feeds the slots, "
        "instead of one fetch per job (None or -1: off). Unstarted jobs are given back (their "
        "attempt refunded) after local_queue_ttl and on shutdown. A batch takes at most one "
        "job per named queue, so queues stay serial.",
    )
    local_queue_ttl: Annotated[float, Flag(metavar="SECONDS")] = Field(
        300.0,
        ge=MIN_INTERVAL,
        allow_inf_nan=False,
        description="Give locally queued jobs back after this long.",
    )
    local_queue_refetch_delay: Annotated[
        RefetchDelay | None,
        PlainValidator(_refetch_delay),
        Flag(
            metavar="SECONDS",
            parse=float,
            help="after a fetch that found nothing, wait this long before the next (default: off)",
        ),
    ] = Field(
        None,
        description="After a fetch that found (almost) nothing, wait this long before "
        "fetching again: seconds, or a RefetchDelay. At most poll_interval; needs a local "
        "queue.",
    )
    complete_job_batch_delay: Annotated[
        float | None,
        BeforeValidator(_minus_one_is_off),
        Flag(
            metavar="SECONDS",
            help="write completions in batches gathered for this long, 0 = per loop turn "
            "(default -1: one statement per job)",
        ),
    ] = Field(
        None,
        ge=0.0,
        allow_inf_nan=False,
        description="Gather completions for this many seconds (0: until the event loop's "
        "next turn) and write each batch with one statement (None or -1: off). A batch that "
        "cannot be written stops the worker (pool:fatalError); its jobs stay locked until the "
        "stale-lock sweep.",
    )
    fail_job_batch_delay: Annotated[
        float | None,
        BeforeValidator(_minus_one_is_off),
        Flag(
            metavar="SECONDS",
            help="write failures in batches gathered for this long (default -1: off)",
        ),
    ] = Field(
        None,
        ge=0.0,
        allow_inf_nan=False,
        description="As complete_job_batch_delay, for failures.",
    )
    asynchronous_release_commit: Annotated[
        bool,
        Flag(
            help="commit job outcomes without waiting for the WAL flush (faster; after a "
            "database crash the last outcomes may be lost and those jobs run again)"
        ),
    ] = Field(
        False,
        description="Write job outcomes (completions, failures) with synchronous_commit = off "
        "for their own transaction only: the commit does not wait for the WAL flush. After a "
        "database crash (not a worker crash) the outcomes of the last fraction of a second may "
        "be lost, and those jobs run once more. Enqueues, fetches and everything else stay "
        "durable. Off by default.",
    )
    metrics: Annotated[
        Any,
        PlainValidator(_metrics),
        NoFlag("--metrics-port serves a WorkerMetrics of its own"),
    ] = Field(
        None,
        description="A sqlalchemy_graphile.prometheus.WorkerMetrics to count this worker's jobs "
        "in (the prometheus extra); None: no counting at all.",
    )
    metrics_port: Annotated[
        int | None,
        Flag(
            metavar="PORT",
            help="serve Prometheus metrics on http://0.0.0.0:PORT/metrics (0: any free port; "
            "pip install 'sqlalchemy-graphile[prometheus]')",
        ),
    ] = Field(
        None,
        ge=0,
        le=65535,
        description="Serve Prometheus metrics on http://0.0.0.0:PORT/metrics while running (0: "
        "any free port, see Worker.metrics_port): the worker's (in metrics, or a new "
        "WorkerMetrics with the process's own metrics) and, unless queue_metrics is False, the "
        "queue-level gauges read at each scrape. Needs the prometheus extra.",
    )
    queue_metrics: Annotated[
        bool,
        Flag(help="leave the queue-level gauges out of --metrics-port (serve them from one place)"),
    ] = Field(
        True,
        description="Whether metrics_port also serves the queue-level gauges; False when they "
        "are served from one place for many workers.",
    )

    unhandled_jobs_interval: Annotated[float | None, Flag(metavar="SECONDS")] = Field(
        DEFAULT_UNHANDLED_INTERVAL,
        ge=MIN_INTERVAL,
        allow_inf_nan=False,
        description="How often to warn about ready jobs whose task no worker seems to handle "
        "(None: never). The worker checks when it starts, then at this interval, and names the "
        "task identifiers that are not among its tasks nor in handled_elsewhere, have ready "
        "jobs (after start-up: the oldest ready for longer than the interval) and of which "
        "no job is locked by any worker.",
    )
    handled_elsewhere: Annotated[
        frozenset[str] | None,
        PlainValidator(_identifier_set),
        Flag(
            ("--handled-elsewhere",),
            metavar="IDENTIFIER",
            help="other workers run this task identifier: do not warn about its waiting jobs "
            "(repeatable)",
            repeat=True,
        ),
    ] = Field(
        None,
        description="Task identifiers other workers (Node, Rust, other Python workers) run: "
        "the check of unhandled_jobs_interval never reports them.",
    )

    heartbeat_interval: Annotated[
        float | None,
        BeforeValidator(_minus_one_is_off),
        Flag(
            metavar="SECONDS",
            help="refresh this worker's heartbeat in _private_workers this often "
            "(-1: do not register; default 30)",
        ),
    ] = Field(
        30.0,
        ge=MIN_INTERVAL,
        allow_inf_nan=False,
        description="Register this worker in _private_workers (schema revision 20) and "
        "refresh its heartbeat this often; it deregisters when it stops cleanly (None or -1: "
        "do not register; then no sweep can tell that it died).",
    )
    sweep_interval: Annotated[
        float | None,
        BeforeValidator(_minus_one_is_off),
        Flag(
            metavar="SECONDS",
            help="look for dead workers and recover their jobs this often (-1: never; default 60)",
        ),
    ] = Field(
        60.0,
        ge=MIN_INTERVAL,
        allow_inf_nan=False,
        description="Run the recovery sweep this often (None or -1: this worker never "
        "sweeps): jobs and queue locks of registered workers whose heartbeat is older than "
        "sweep_threshold are given back (attempt refunded) and the dead workers' rows "
        "deleted. One sweeper at a time, whatever the fleet (an advisory lock).",
    )
    sweep_threshold: Annotated[float, Flag(metavar="SECONDS")] = Field(
        300.0,
        ge=MIN_INTERVAL,
        allow_inf_nan=False,
        description="A registered worker whose heartbeat is older than this is dead. Must "
        "exceed heartbeat_interval (twice it or more is advised).",
    )
    recovery_delay: Annotated[float, Flag(metavar="SECONDS")] = Field(
        0.0,
        ge=0.0,
        allow_inf_nan=False,
        description="A recovered job runs again no sooner than this after the sweep.",
    )
    resilient_flags: Annotated[
        tuple[str, ...],
        PlainValidator(_resilient_flags),
        Flag(
            ("--resilient-flag",),
            metavar="FLAG",
            help="a job flag whose holder gets --resilient-threshold-multiplier times the "
            "threshold (repeatable; default infrastructure_resilient)",
            repeat=True,
        ),
    ] = Field(
        DEFAULT_RESILIENT_FLAGS,
        description="A worker holding a job with any of these flags counts as dead only "
        "after sweep_threshold * resilient_threshold_multiplier.",
    )
    resilient_threshold_multiplier: Annotated[float, Flag(metavar="FACTOR")] = Field(
        3.0,
        ge=1.0,
        allow_inf_nan=False,
        description="The factor of resilient_flags.",
    )
    recover_unregistered_locks: Annotated[
        bool,
        Flag(
            help="also recover locks older than the threshold held by workers that never "
            "registered (unsafe next to Graphile Worker 0.17, whose workers never register)"
        ),
    ] = Field(
        False,
        description="Also recover locks older than sweep_threshold whose owner never "
        "registered (the Rust port's orphan rule). Unsafe next to Node workers, which never "
        "register: their jobs running longer than the threshold would run twice.",
    )

    @model_validator(mode="after")
    def _check_together(self) -> Self:
        """The checks that involve two options, and the defaults that follow from others."""
        if self.metrics_port is not None:
            _prometheus_extra()
        heartbeat = self.heartbeat_interval
        if heartbeat is not None and self.sweep_threshold <= heartbeat:
            raise ConfigurationError(
                f"sweep_threshold ({self.sweep_threshold} s) must exceed heartbeat_interval "
                f"({heartbeat} s): live workers would look dead"
            )
        if self.max_reset_locked_interval < self.min_reset_locked_interval:
            raise ConfigurationError(
                f"max_reset_locked_interval ({self.max_reset_locked_interval}) must not be "
                f"less than min_reset_locked_interval ({self.min_reset_locked_interval})"
            )
        delay = self.local_queue_refetch_delay
        if delay is not None:
            if self.local_queue_size is None:
                raise ConfigurationError(
                    "local_queue_refetch_delay needs a local queue (local_queue_size)"
                )
            if delay.duration > self.poll_interval:
                raise ConfigurationError(
                    f"local_queue_refetch_delay duration ({delay.duration} s) must not exceed "
                    f"poll_interval ({self.poll_interval} s)"
                )
            if delay.max_abort_threshold is None:
                resolved = RefetchDelay(delay.duration, delay.threshold, 5 * self.local_queue_size)
                # Frozen: set as a frozen dataclass's __post_init__ would.
                object.__setattr__(self, "local_queue_refetch_delay", resolved)
        return self

    @classmethod
    def build(cls, **options: Any) -> WorkerOptions:
        """Validate ``options`` (the keywords of :class:`Worker`). Raises
        :class:`ConfigurationError` naming every bad option, or the more precise error of
        one (:class:`InvalidTaskError`, :class:`InvalidIdentifierError`,
        :class:`CrontabError`)."""
        try:
            return cls(**options)
        except ValidationError as error:
            raise _options_error(error) from None

    @property
    def sweep_settings(self) -> SweepSettings:
        """The recovery sweep's settings, from the options."""
        return SweepSettings(
            threshold=self.sweep_threshold,
            recovery_delay=self.recovery_delay,
            resilient_flags=self.resilient_flags,
            resilient_multiplier=self.resilient_threshold_multiplier,
            recover_unregistered=self.recover_unregistered_locks,
        )

    @property
    def max_connections(self) -> int:
        """The most connections the worker opens for running jobs (its asyncpg pool's
        size): ``max_pool_size``, or by default the larger of 10 and ``concurrency``."""
        if self.max_pool_size is not None:
            return self.max_pool_size
        return max(DEFAULT_MAX_POOL_SIZE, self.concurrency)


def _options_error(error: ValidationError) -> GraphileWorkerError:
    for detail in error.errors(include_url=False, include_input=False):
        cause = detail.get("ctx", {}).get("error")
        if isinstance(cause, GraphileWorkerError) and type(cause) is not ConfigurationError:
            return cause  # a more precise error: a bad schema name, crontab, ...
    return ConfigurationError(f"invalid worker options: {validation_problems(error, whole=None)}")


# -- what the fields feed ------------------------------------------------------------------


def option_fields() -> dict[str, FieldInfo]:
    """Every option's field, in declaration order."""
    # The field table pydantic keeps on a pydantic dataclass (model_fields on a model).
    fields: dict[str, FieldInfo] = vars(WorkerOptions)["__pydantic_fields__"]
    return fields


def _marker(field: FieldInfo) -> Flag | NoFlag:
    markers = [m for m in field.metadata if isinstance(m, Flag | NoFlag)]
    if len(markers) != 1:
        raise TypeError("each WorkerOptions field needs one Flag() or NoFlag(reason)")
    return markers[0]


def default_of(field: FieldInfo) -> Any:
    """The default value of an option (computed, for a default computed when built)."""
    return field.get_default(call_default_factory=True)


def option_flags() -> list[OptionFlag]:
    """The ``run`` flags of the options that have one, derived from their fields."""
    flags = []
    for name, field in option_fields().items():
        marker = _marker(field)
        if isinstance(marker, NoFlag):
            continue
        default = default_of(field)
        dashed = name.replace("_", "-")
        if field.annotation is bool:
            action = "store_false" if default else "store_true"
            names = marker.names or (f"--no-{dashed}" if default else f"--{dashed}",)
        else:
            action = "append" if marker.repeat else "store"
            names = marker.names or (f"--{dashed}",)
        help_text = marker.help or _first_sentence(field.description or "")
        if default is not None and not isinstance(default, bool):
            shown = f"{default:g}" if isinstance(default, float) else str(default)
            help_text += f" (default {shown})"
        parse = None
        if action == "append":
            parse = marker.parse or str
        elif action == "store":
            parse = _checked_parser(name, marker.parse)
        flags.append(
            OptionFlag(
                option=name,
                names=names,
                help=help_text,
                default=None if action == "append" else default,
                action=action,
                metavar=marker.metavar,
                parse=parse,
            )
        )
    return flags


def _first_sentence(text: str) -> str:
    sentence = re.split(r"(?<=[.;])\s", text, maxsplit=1)[0].rstrip(".;")
    return sentence[:1].lower() + sentence[1:]


def _checked_parser(name: str, parse: Callable[[str], Any] | None) -> Callable[[str], Any]:
    """Text to the option's value: ``parse``, or else the option's ``int``, ``float`` or
    ``str`` type; the value is then checked as the option checks it (and returned as
    parsed). A bad value raises ``ValueError`` naming the problem."""
    field = option_fields()[name]
    kinds = [t for t in get_args(field.annotation) if t is not type(None)] or [field.annotation]
    convert: Callable[[str], Any] = parse or (kinds[0] if kinds[0] in (int, float) else str)
    expected = "an integer" if convert is int else "a number" if convert is float else "valid"
    form: Any = Annotated[(field.annotation, *field.metadata)]
    adapter: TypeAdapter[Any] = TypeAdapter(form, config=ConfigDict(strict=True))

    def checked(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise ValueError(f"{text!r} is not {expected}") from None
        try:
            adapter.validate_python(value)
        except ValidationError as error:
            raise ValueError(validation_problems(error, whole=None)) from None
        return value

    return checked


def describe_options() -> str:
    """The options as a reST bullet list: name, default and description."""
    items = []
    for name, field in option_fields().items():
        if field.is_required():
            item = f"* ``{name}`` (required): {field.description}"
        elif field.default_factory is not None:
            item = f"* ``{name}``: {field.description}"
        else:
            item = f"* ``{name}`` (``{field.default!r}``): {field.description}"
        items.append(textwrap.fill(item, width=88, subsequent_indent="  "))
    return "\n".join(items)
