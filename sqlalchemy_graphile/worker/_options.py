"""The worker's options, checked once when the :class:`Worker` is built.

Every bad value raises :class:`ConfigurationError` (or :class:`InvalidTaskError` /
:class:`InvalidIdentifierError` for a bad task class or schema name) before anything
connects. Times are in seconds.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._identifiers import resolve_schema
from ..context import extension_map
from ..cron._items import CronItem
from ..cron._parser import crontab_items
from ..errors import ConfigurationError
from ..tasks import AnyTaskType, check_task_type

#: A static list of flags, or a function (sync or async) returning one; ``None`` = none.
ForbiddenFlagsResult = Sequence[str] | None
ForbiddenFlags = (
    Sequence[str] | Callable[[], ForbiddenFlagsResult | Awaitable[ForbiddenFlagsResult]] | None
)

#: Graphile Worker's default pool size.
DEFAULT_MAX_POOL_SIZE = 10


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
class WorkerOptions:
    """Validated worker options; see :class:`Worker` for their meaning."""

    tasks: Mapping[str, AnyTaskType]
    concurrency: int
    schema: str
    poll_interval: float
    extensions: Mapping[type, object]
    forbidden_flags: ForbiddenFlags
    listen: bool
    use_local_time: bool
    graceful_shutdown_abort_timeout: float
    handle_signals: bool
    max_pool_size: int
    min_reset_locked_interval: float
    max_reset_locked_interval: float
    prepared_statements: bool
    #: The cron items a continuous worker schedules (none by default).
    crontab: tuple[CronItem, ...] = ()
    #: Jobs fetched at once into the local queue; ``None`` when it is off.
    local_queue_size: int | None = None
    local_queue_ttl: float = 300.0
    #: With ``max_abort_threshold`` resolved; ``None`` when off.
    local_queue_refetch_delay: RefetchDelay | None = None
    #: Seconds to gather completions / failures before writing them; ``None`` when off.
    complete_job_batch_delay: float | None = None
    fail_job_batch_delay: float | None = None
    #: The port of the ``/metrics`` endpoint (0: any free one); ``None`` when off.
    metrics_port: int | None = None
    #: Whether that endpoint also shows the queue-level gauges.
    queue_metrics: bool = True


def build_options(
    *,
    tasks: Iterable[AnyTaskType],
    concurrency: int,
    schema: str | None,
    poll_interval: float,
    extensions: Iterable[object],
    forbidden_flags: ForbiddenFlags,
    listen: bool,
    use_local_time: bool,
    graceful_shutdown_abort_timeout: float,
    handle_signals: bool,
    max_pool_size: int | None,
    min_reset_locked_interval: float,
    max_reset_locked_interval: float,
    prepared_statements: bool,
    crontab: object = None,
    local_queue_size: int | None = None,
    local_queue_ttl: float = 300.0,
    local_queue_refetch_delay: RefetchDelay | float | None = None,
    complete_job_batch_delay: float | None = None,
    fail_job_batch_delay: float | None = None,
    metrics_port: int | None = None,
    queue_metrics: bool = True,
) -> WorkerOptions:
    """Check every option and return them as :class:`WorkerOptions`."""
    concurrency = _positive_int("concurrency", concurrency)
    poll = _seconds("poll_interval", poll_interval, minimum=0.001)
    queue_size = _local_queue_size(local_queue_size)
    pool_size = (
        max(DEFAULT_MAX_POOL_SIZE, concurrency)
        if max_pool_size is None
        else _positive_int("max_pool_size", max_pool_size)
    )
    min_reset = _seconds("min_reset_locked_interval", min_reset_locked_interval, minimum=0.001)
    max_reset = _seconds("max_reset_locked_interval", max_reset_locked_interval, minimum=0.001)
    if max_reset < min_reset:
        raise ConfigurationError(
            f"max_reset_locked_interval ({max_reset}) must not be less than "
            f"min_reset_locked_interval ({min_reset})"
        )
    return WorkerOptions(
        tasks=task_map(tasks),
        concurrency=concurrency,
        schema=resolve_schema(schema),
        poll_interval=poll,
        extensions=_extensions(extensions),
        forbidden_flags=_forbidden_flags(forbidden_flags),
        listen=_bool("listen", listen),
        use_local_time=_bool("use_local_time", use_local_time),
        graceful_shutdown_abort_timeout=_seconds(
            "graceful_shutdown_abort_timeout", graceful_shutdown_abort_timeout, minimum=0.0
        ),
        handle_signals=_bool("handle_signals", handle_signals),
        max_pool_size=pool_size,
        min_reset_locked_interval=min_reset,
        max_reset_locked_interval=max_reset,
        prepared_statements=_bool("prepared_statements", prepared_statements),
        crontab=crontab_items(crontab),
        local_queue_size=queue_size,
        local_queue_ttl=_seconds("local_queue_ttl", local_queue_ttl, minimum=0.001),
        local_queue_refetch_delay=_refetch_delay(local_queue_refetch_delay, queue_size, poll),
        complete_job_batch_delay=_batch_delay("complete_job_batch_delay", complete_job_batch_delay),
        fail_job_batch_delay=_batch_delay("fail_job_batch_delay", fail_job_batch_delay),
        metrics_port=_port("metrics_port", metrics_port),
        queue_metrics=_bool("queue_metrics", queue_metrics),
    )


def _port(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigurationError(
            f"{name} must be None (off) or a port number from 0 (any free port) to 65535, "
            f"not {value!r}"
        )
    return value


def _local_queue_size(value: object) -> int | None:
    if value is None or (value == -1 and not isinstance(value, bool)):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"local_queue_size must be None or -1 (off) or an int of at least 1, not {value!r}"
        )
    return value


def _refetch_delay(
    value: object, queue_size: int | None, poll_interval: float
) -> RefetchDelay | None:
    if value is None:
        return None
    if queue_size is None:
        raise ConfigurationError("local_queue_refetch_delay needs a local queue (local_queue_size)")
    if not isinstance(value, RefetchDelay):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigurationError(
                "local_queue_refetch_delay must be None, a number of seconds or a RefetchDelay, "
                f"not {value!r}"
            )
        value = RefetchDelay(duration=value)
    duration = _seconds("local_queue_refetch_delay duration", value.duration, minimum=0.0)
    if duration > poll_interval:
        raise ConfigurationError(
            f"local_queue_refetch_delay duration ({duration} s) must not exceed poll_interval "
            f"({poll_interval} s)"
        )
    threshold = value.threshold
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
        raise ConfigurationError(
            f"local_queue_refetch_delay threshold must be an int of at least 0, not {threshold!r}"
        )
    abort = value.max_abort_threshold
    if abort is None:
        abort = 5 * queue_size
    elif isinstance(abort, bool) or not isinstance(abort, int) or abort < 1:
        raise ConfigurationError(
            "local_queue_refetch_delay max_abort_threshold must be None or an int of at least 1, "
            f"not {abort!r}"
        )
    return RefetchDelay(duration=duration, threshold=threshold, max_abort_threshold=abort)


def _batch_delay(name: str, value: object) -> float | None:
    if value is None or (value == -1 and not isinstance(value, bool)):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be None or -1 (off) or seconds >= 0, not {value!r}")
    return _seconds(name, value, minimum=0.0)


def task_map(tasks: Iterable[AnyTaskType]) -> dict[str, AnyTaskType]:
    """Index task classes by identifier; a repeated identifier is a
    :class:`ConfigurationError`, a class that is not a task an :class:`InvalidTaskError`."""
    if isinstance(tasks, str | bytes) or not isinstance(tasks, Iterable):
        raise ConfigurationError("tasks must be an iterable of Task / BatchTask classes")
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
        raise ConfigurationError("tasks is empty: give the worker at least one task class")
    return by_identifier


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
    return _flag_list(value, "forbidden_flags() returned")


def _forbidden_flags(option: object) -> ForbiddenFlags:
    if option is None or callable(option):
        return option
    return tuple(_flag_list(option, "forbidden_flags"))


def _flag_list(value: object, what: str) -> list[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ConfigurationError(
            f"{what} must be None or a list of strings, not {type(value).__name__}"
        )
    flags = list(value)
    for flag in flags:
        if not isinstance(flag, str):
            raise ConfigurationError(f"{what} contains a flag that is not a str: {flag!r}")
    return flags


def _extensions(extensions: object) -> Mapping[type, object]:
    if isinstance(extensions, str | bytes) or not isinstance(extensions, Iterable):
        raise ConfigurationError("extensions must be an iterable of objects")
    return extension_map(extensions)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an int of at least 1, not {value!r}")
    return value


def _seconds(name: str, value: object, *, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number of seconds, not {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < minimum:
        raise ConfigurationError(f"{name} must be a finite number of seconds >= {minimum}")
    return number


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, not {value!r}")
    return value
