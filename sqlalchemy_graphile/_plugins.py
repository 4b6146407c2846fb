"""Calling the hooks of registered plugins, and reporting the ones that raise.

:class:`Plugins` is built once per :class:`Worker`, :class:`WorkerUtils` or helper object
from the ``plugins`` option. It remembers which hooks each plugin overrides, so a hook
left at :class:`WorkerPlugin`'s default is never called, and the add and run paths only
ask :attr:`Plugins.schedules` / :attr:`Plugins.runs` before doing anything.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic_core import from_json

from ._job_input import NewJob
from ._payload import encode_payload
from .errors import ConfigurationError, JobScheduleError
from .events import HookErrorEvent, WorkerEvents
from .hooks import JobRecovery, JobRun, JobRunResult, JobToSchedule, WorkerPlugin
from .job import Job
from .job_spec import JobSpec, check_task_identifier

logger = logging.getLogger("sqlalchemy_graphile.hooks")

_HOOKS = ("before_job_schedule", "before_job_run", "after_job_run", "on_job_recovery")


def _overrides(plugin: WorkerPlugin, hook: str) -> bool:
    return getattr(type(plugin), hook) is not getattr(WorkerPlugin, hook)


@dataclass(frozen=True, slots=True)
class _Bound:
    plugin: WorkerPlugin
    hook: Callable[..., Any]


class Plugins:
    """The plugins of one object, with their overridden hooks sorted by kind. Iterating
    gives the plugins, so a :class:`Plugins` can be passed where plugins are expected."""

    __slots__ = ("_by_hook", "_plugins", "events", "pool_id", "recovers", "runs", "schedules")

    def __init__(
        self, plugins: Iterable[WorkerPlugin], *, events: WorkerEvents | None = None
    ) -> None:
        self._plugins = check_plugins(plugins)
        self._by_hook: dict[str, tuple[_Bound, ...]] = {
            hook: tuple(
                _Bound(plugin, getattr(plugin, hook))
                for plugin in self._plugins
                if _overrides(plugin, hook)
            )
            for hook in _HOOKS
        }
        #: Where ``hook:error`` events go (``None``: they are only logged).
        self.events = events
        #: The lock owner id the events carry (set by the worker for each run).
        self.pool_id = ""
        #: Whether any plugin overrides ``before_job_schedule``.
        self.schedules = bool(self._by_hook["before_job_schedule"])
        #: Whether any plugin overrides ``before_job_run`` or ``after_job_run``.
        self.runs = bool(self._by_hook["before_job_run"] or self._by_hook["after_job_run"])
        #: Whether any plugin overrides ``on_job_recovery``.
        self.recovers = bool(self._by_hook["on_job_recovery"])

    @classmethod
    def of(cls, plugins: Iterable[WorkerPlugin], events: WorkerEvents | None = None) -> Plugins:
        """``plugins`` itself if it is a :class:`Plugins` already (shared with its events),
        else a new one reporting to ``events``."""
        if isinstance(plugins, Plugins):
            return plugins
        if events is not None and not isinstance(events, WorkerEvents):
            raise ConfigurationError(f"events must be a WorkerEvents, not {type(events).__name__}")
        return cls(plugins, events=events)

    def __iter__(self) -> Iterator[WorkerPlugin]:
        return iter(self._plugins)

    def __len__(self) -> int:
        return len(self._plugins)

    # -- before_job_schedule -----------------------------------------------------------

    def schedule(self, job: NewJob, *, batch: bool = False) -> NewJob:
        """``job`` as the ``before_job_schedule`` hooks leave it. Raises the
        :class:`JobScheduleError` a hook raised on purpose; reports any other error and goes
        on with the job as it was before that hook."""
        current = JobToSchedule(job.identifier, from_json(job.payload_json), job.spec)
        payload_json = job.payload_json
        for bound in self._by_hook["before_job_schedule"]:
            try:
                result = bound.hook(current)
                checked, payload_json = _checked(result, current.identifier, batch)
            except JobScheduleError:
                raise
            except Exception as error:
                self._report(bound, "before_job_schedule", error, identifier=current.identifier)
                # The hook may have changed the payload in place before failing.
                current = JobToSchedule(current.identifier, from_json(payload_json), current.spec)
                continue
            current = checked
        return NewJob(current.identifier, payload_json, current.spec)

    def schedule_all(self, jobs: list[NewJob]) -> list[NewJob]:
        """:meth:`schedule` for each job of a bulk add (one skip or refusal stops them all)."""
        return [self.schedule(job) for job in jobs]

    # -- run and recovery hooks ---------------------------------------------------------

    async def before_run(self, run: JobRun) -> None:
        for bound in self._by_hook["before_job_run"]:
            await self._call(bound, "before_job_run", run.job, run)

    async def after_run(self, run: JobRun, result: JobRunResult) -> None:
        for bound in self._by_hook["after_job_run"]:
            await self._call(bound, "after_job_run", run.job, run, result)

    async def job_recovered(self, recovery: JobRecovery) -> None:
        """Call every ``on_job_recovery`` hook; errors are reported, never raised."""
        for bound in self._by_hook["on_job_recovery"]:
            await self._call(bound, "on_job_recovery", recovery.job, recovery)

    async def _call(self, bound: _Bound, name: str, job: Job, *args: Any) -> None:
        try:
            result = bound.hook(*args)
            if inspect.isawaitable(result):
                await result
        except Exception as error:
            self._report(bound, name, error, identifier=job.task_identifier, job=job)

    def _report(
        self,
        bound: _Bound,
        hook: str,
        error: Exception,
        *,
        identifier: str,
        job: Job | None = None,
    ) -> None:
        plugin = type(bound.plugin).__qualname__
        what = f"job {job.id} ({identifier})" if job is not None else f"a {identifier} job"
        logger.error(
            "%s.%s raised for %s; the hook is ignored for this job",
            plugin,
            hook,
            what,
            exc_info=error,
        )
        events = self.events
        if events is not None and events.listening("hook:error"):
            events.emit(
                HookErrorEvent(
                    name="hook:error",
                    pool_id=self.pool_id,
                    hook=hook,
                    plugin=bound.plugin,
                    error=error,
                    task_identifier=identifier,
                    job=job,
                )
            )


def _checked(result: object, identifier: str, batch: bool) -> tuple[JobToSchedule, str]:
    """A hook's result (given a job with ``identifier``), validated, and its payload's JSON
    text."""
    if not isinstance(result, JobToSchedule):
        raise TypeError(f"before_job_schedule must return a JobToSchedule, not {result!r}")
    if result.identifier is not identifier:
        check_task_identifier(result.identifier)
    if not isinstance(result.spec, JobSpec):
        raise TypeError(f"the spec must be a JobSpec, not {type(result.spec).__name__}")
    if batch and not (isinstance(result.payload, list) and result.payload):
        raise TypeError("before_job_schedule must leave a batch job's payload a non-empty list")
    return result, encode_payload(result.payload)


def check_plugins(plugins: object) -> tuple[WorkerPlugin, ...]:
    """The plugins as a tuple; :class:`ConfigurationError` for anything that is not an
    iterable of :class:`WorkerPlugin` instances."""
    if isinstance(plugins, str | bytes) or not isinstance(plugins, Iterable):
        raise ConfigurationError("plugins must be an iterable of WorkerPlugin instances")
    checked = tuple(plugins)
    for plugin in checked:
        if not isinstance(plugin, WorkerPlugin):
            raise ConfigurationError(
                f"plugins must be WorkerPlugin instances (subclass WorkerPlugin), "
                f"not {type(plugin).__qualname__}"
            )
    return checked
