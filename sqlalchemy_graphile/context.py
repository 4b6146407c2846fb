""":class:`WorkerContext`: what a running task can reach besides its payload."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .errors import ConfigurationError
from .job import Job
from .job_spec import JobSpec, RawJobSpec

if TYPE_CHECKING:
    from .tasks import BatchTask, Task

T = TypeVar("T")


class JobAdder(Protocol):
    """The add methods a context forwards to: a worker's adder on its own pool, or
    ``run_jobs``' adder in the test's transaction (both with :class:`WorkerUtils`'
    signatures and errors)."""

    async def add_job(self, task: Task, spec: JobSpec | None = None) -> Job: ...

    async def add_jobs(self, jobs: Sequence[tuple[Task, JobSpec | None]]) -> list[Job]: ...

    async def add_raw_job(
        self, identifier: str, payload: Any = None, spec: JobSpec | None = None
    ) -> Job: ...

    async def add_raw_jobs(self, jobs: Sequence[RawJobSpec]) -> list[Job]: ...

    async def add_batch_job(
        self, items: Sequence[BatchTask], spec: JobSpec | None = None
    ) -> Job: ...


def extension_map(extensions: Iterable[object]) -> dict[type, object]:
    """Index extension objects by their type; two of one type is a :class:`ConfigurationError`."""
    by_type: dict[type, object] = {}
    for extension in extensions:
        if type(extension) in by_type:
            raise ConfigurationError(
                f"two extensions of type {type(extension).__qualname__}; give one per type"
            )
        by_type[type(extension)] = extension
    return by_type


class WorkerContext:
    """Per-job context handed to :meth:`Task.run` and :meth:`BatchTask.run_batch`.

    * ``job``: the :class:`Job` row as fetched (``attempts`` counts this attempt);
    * ``worker_id``: the lock owner id of the worker pool running the job;
    * ``logger``: a logger whose records carry the task, job id and attempt;
    * ``abort_signal``: an :class:`asyncio.Event` set when a graceful shutdown has waited
      ``graceful_shutdown_abort_timeout`` seconds; long tasks should watch it;
    * :meth:`get_ext`: the worker's extension object of a type (process-local resources);
    * :meth:`add_job` and friends: add follow-up jobs on the worker's own connections, each
      call in a transaction of its own, committed at once, independent of the running job
      (under ``run_jobs``, in the test's transaction instead).
    """

    __slots__ = ("_adder", "_extensions", "_job", "_logger", "abort_signal", "worker_id")

    def __init__(
        self,
        *,
        job: Job,
        worker_id: str,
        extensions: Mapping[type, object],
        logger: logging.LoggerAdapter[logging.Logger],
        abort_signal: asyncio.Event,
        adder: JobAdder,
    ) -> None:
        self._job = job
        self.worker_id = worker_id
        self._logger = logger
        self.abort_signal = abort_signal
        self._extensions = extensions
        self._adder = adder

    @property
    def job(self) -> Job:
        """The :class:`Job` row as fetched (``attempts`` counts this attempt)."""
        return self._job

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry the task, job id and attempt."""
        return self._logger

    def get_ext(self, ext_type: type[T]) -> T | None:
        """The extension registered with this type (or a subclass of it), else ``None``.
        No database access; raises nothing."""
        found = self._extensions.get(ext_type)
        if found is None:
            found = next((e for e in self._extensions.values() if isinstance(e, ext_type)), None)
        return found  # type: ignore[return-value]

    async def add_job(self, task: Task, spec: JobSpec | None = None) -> Job:
        """Add a follow-up job, committed before this returns whatever becomes of the
        running job; errors as :meth:`WorkerUtils.add_job`."""
        return await self._adder.add_job(task, spec)

    async def add_jobs(self, jobs: Sequence[tuple[Task, JobSpec | None]]) -> list[Job]:
        """Add several follow-up jobs of one task type in one round trip, committed before
        this returns; errors as :meth:`WorkerUtils.add_jobs`."""
        return await self._adder.add_jobs(jobs)

    async def add_raw_job(
        self, identifier: str, payload: Any = None, spec: JobSpec | None = None
    ) -> Job:
        """Add a follow-up job by task identifier and JSON payload, committed before this
        returns; errors as :meth:`WorkerUtils.add_raw_job`."""
        return await self._adder.add_raw_job(identifier, payload, spec)

    async def add_raw_jobs(self, jobs: Sequence[RawJobSpec]) -> list[Job]:
        """Add several raw follow-up jobs in one round trip, committed before this returns;
        errors as :meth:`WorkerUtils.add_raw_jobs`."""
        return await self._adder.add_raw_jobs(jobs)

    async def add_batch_job(self, items: Sequence[BatchTask], spec: JobSpec | None = None) -> Job:
        """Add a follow-up batch job holding ``items``, committed before this returns;
        errors as :meth:`WorkerUtils.add_batch_job`."""
        return await self._adder.add_batch_job(items, spec)
