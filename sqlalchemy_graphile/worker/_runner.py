"""Running one job's task and turning what happened into an :class:`Outcome`.

No database access happens here: the slot loop gives the outcome to its releaser.

* A :class:`Task` payload is validated straight from the stored JSON text (by the
  model's ``__pydantic_validator__``, as ``model_validate_json`` does), less the ``_trace``
  key that carries a trace context; ``run`` is awaited on the event loop when it is
  ``async def`` and called in the worker's thread pool otherwise.
* A :class:`BatchTask` payload must be a JSON array. Its items are cut out of the stored
  text as they are, validated one by one, and run together by ``run_batch``; failed items
  are kept with their original JSON text, so a retry sees exactly what was stored.
* Every exception from task code becomes a failure whose message (the future
  ``last_error``) is ``"ExcType: message"``; a batch with failed items gives
  ``"Batch failures:"`` followed by one line per failed item.
* With plugins that hook runs, ``before_job_run`` is awaited in the slot's own task just
  before the run and ``after_job_run`` just after it (also when the run is cancelled), so
  context variables a plugin sets reach the task and the second hook.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .._payload import without_trace
from .._plugins import Plugins
from .._store import FetchedJob
from ..context import JobAdder, WorkerContext
from ..errors import BatchJobError, InvalidTaskError, PayloadValidationError
from ..hooks import JobRun, JobRunOutcome, JobRunResult
from ..job import Job
from ..log_format import JobLogger, job_fields
from ..tasks import AnyTaskType, BatchTask, BatchTaskResult, Task, is_batch_task

logger = logging.getLogger("sqlalchemy_graphile.worker")
task_logger = logging.getLogger("sqlalchemy_graphile.task")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What running a job came to. ``error`` is ``None`` on success; on failure ``message``
    is the text to store as ``last_error`` and ``replacement_payload`` (JSON text) the
    payload to keep for the retry, when it differs from the stored one. A ``permanent``
    failure (a stored payload that does not fit the task) uses up the job's attempts: no
    retry could succeed until the job is rescheduled."""

    error: BaseException | None = None
    message: str | None = None
    replacement_payload: str | None = None
    batch_errors: tuple[BaseException | str, ...] | None = None
    permanent: bool = False

    @property
    def succeeded(self) -> bool:
        return self.error is None


SUCCESS = Outcome()


def is_final(job: Job, outcome: Outcome) -> bool:
    """Whether a failed ``outcome`` leaves ``job`` (as locked for the run) no attempt."""
    return outcome.permanent or job.attempts >= job.max_attempts


def log_outcome(log: logging.Logger, job: Job, outcome: Outcome, millis: float) -> None:
    """The line a recorded outcome gets on ``log``: info on success, an error with the
    task's traceback on failure; each with the job's fields as ``extra``."""
    if outcome.succeeded:
        if log.isEnabledFor(logging.INFO):
            log.info(
                "completed job %s (%s) in %.1f ms, attempt %d of %d",
                job.id,
                job.task_identifier,
                millis,
                job.attempts,
                job.max_attempts,
                extra=job_fields(job),
            )
        return
    log.error(
        "job %s (%s) failed in %.1f ms, attempt %d of %d%s: %s",
        job.id,
        job.task_identifier,
        millis,
        job.attempts,
        job.max_attempts,
        "; no attempts left" if is_final(job, outcome) else "; it will be retried",
        outcome.message,
        exc_info=outcome.error,
        extra=job_fields(job),
    )


def failure(error: BaseException, **extra: Any) -> Outcome:
    """The failed outcome for ``error``."""
    return Outcome(error=error, message=describe_error(error), **extra)


def describe_error(error: BaseException) -> str:
    """The ``last_error`` text for ``error``: ``"ExcType: message"`` (or just ``ExcType``),
    and the batch summary unchanged for :class:`BatchJobError`. Never empty; characters
    PostgreSQL cannot store in text are escaped."""
    try:
        text = str(error)
    except Exception:
        text = ""
    if not isinstance(error, BatchJobError):
        name = type(error).__name__
        text = f"{name}: {text}" if text else name
    text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class TaskRunner:
    """Runs jobs for the task types of one worker.

    A job's cost here is kept to what its task needs: the payload is validated from the
    stored text, the context's ``job`` and ``logger`` are built only if the task reads them,
    and what a task type needs (its validator, whether it is a batch task, whether it is
    ``async def``) is looked up once per type.
    """

    def __init__(
        self,
        tasks: Mapping[str, AnyTaskType],
        *,
        extensions: Mapping[type, object],
        pool_id: str,
        abort_signal: asyncio.Event,
        adder: JobAdder,
        executor: Executor,
        plugins: Plugins | None = None,
    ) -> None:
        self._tasks = tasks
        self._plugins = plugins
        self._extensions = extensions
        self._pool_id = pool_id
        self._abort_signal = abort_signal
        self._adder = adder
        self._executor = executor
        self._kinds: dict[type, _TaskKind] = {}
        #: ``await run(fetched)`` runs ``fetched``'s task (between the plugins' run hooks,
        #: if any) and returns the outcome. Exceptions from task code become failures;
        #: cancellation propagates.
        self.run: Callable[[FetchedJob], Awaitable[Outcome]] = (
            self._run if plugins is None else self._run_hooked
        )

    async def _run_hooked(self, fetched: FetchedJob) -> Outcome:
        plugins = self._plugins
        assert plugins is not None
        job = fetched.job
        run = JobRun(job, self._pool_id)
        await plugins.before_run(run)
        started = time.perf_counter()
        try:
            outcome = await self._run(fetched)
        except asyncio.CancelledError as cancelled:
            interrupted = JobRunResult(
                JobRunOutcome.INTERRUPTED, time.perf_counter() - started, error=cancelled
            )
            await plugins.after_run(run, interrupted)
            raise
        duration = time.perf_counter() - started
        if outcome.succeeded:
            result = JobRunResult(JobRunOutcome.SUCCESS, duration)
        else:
            result = JobRunResult(
                JobRunOutcome.FAILURE,
                duration,
                error=outcome.error,
                batch_errors=outcome.batch_errors,
                final=outcome.permanent or job.attempts >= job.max_attempts,
            )
        await plugins.after_run(run, result)
        return outcome

    async def _run(self, fetched: FetchedJob) -> Outcome:
        task_type = self._tasks.get(fetched.task_identifier)
        if task_type is None:
            return failure(InvalidTaskError(f"unsupported task {fetched.task_identifier!r}"))
        kind = self._kinds.get(task_type)
        if kind is None:
            kind = self._kinds[task_type] = _TaskKind.of(task_type)
        ctx = _JobContext(fetched, self._pool_id, self._extensions, self._abort_signal, self._adder)
        if kind.is_batch:
            return await self._run_batch(task_type, kind, fetched, ctx)  # type: ignore[arg-type]
        try:
            task = kind.validate_json(without_trace(fetched.payload_json))
        except ValidationError as error:
            what = f"the payload of job {fetched.id}"
            return failure(_payload_error(what, task_type, error), permanent=True)
        try:
            if kind.is_async:
                await task.run(ctx)
            else:
                await self._call_in_thread(task.run, ctx)
        except Exception as error:
            return failure(error)
        return SUCCESS

    async def _call_in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(*args)`` in the thread pool (with the caller's context variables),
        and await what it returns if that is awaitable."""
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        result = await loop.run_in_executor(self._executor, context.run, function, *args)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _run_batch(
        self, task_type: type[BatchTask], kind: _TaskKind, fetched: FetchedJob, ctx: WorkerContext
    ) -> Outcome:
        try:
            raw_items = split_json_array(fetched.payload_json)
        except ValueError as error:
            return failure(
                PayloadValidationError(
                    f"the payload of batch job {fetched.id} must be a JSON array of "
                    f"{task_type.__qualname__} items, not {error}"
                ),
                permanent=True,
            )
        items = []
        for index, raw in enumerate(raw_items):
            try:
                items.append(kind.validate_json(without_trace(raw)))
            except ValidationError as error:
                what = f"item {index} of the payload of batch job {fetched.id}"
                return failure(_payload_error(what, task_type, error), permanent=True)
        try:
            if kind.is_async:
                result = await task_type.run_batch(items, ctx)  # type: ignore[misc]
            else:
                result = await self._call_in_thread(task_type.run_batch, items, ctx)
        except Exception as error:
            return failure(error)
        try:
            failed = _failed_items(result, len(items), task_type)
        except InvalidTaskError as error:
            return failure(error)
        if not failed:
            return SUCCESS
        errors = tuple(failed[i] for i in sorted(failed))
        replacement = "[" + ",".join(raw_items[i] for i in sorted(failed)) + "]"
        return failure(BatchJobError(errors), replacement_payload=replacement, batch_errors=errors)


class _JobContext(WorkerContext):
    """The context of a job the worker runs: :attr:`job` and :attr:`logger` are built the
    first time the task reads them, so a task that does not pays nothing for them."""

    __slots__ = ("_fetched",)

    def __init__(
        self,
        fetched: FetchedJob,
        worker_id: str,
        extensions: Mapping[type, object],
        abort_signal: asyncio.Event,
        adder: JobAdder,
    ) -> None:
        # Not the base's __init__: it takes the job and the logger, which are built later.
        self._fetched = fetched
        self.worker_id = worker_id
        self._extensions = extensions
        self.abort_signal = abort_signal
        self._adder = adder

    @property
    def job(self) -> Job:
        return self._fetched.job

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        try:
            return self._logger
        except AttributeError:  # the slot is unset until the first read
            self._logger = JobLogger(task_logger, job_fields(self._fetched.job))
            return self._logger


@dataclass(frozen=True, slots=True)
class _TaskKind:
    """What running a job of one task type needs to know about the type."""

    #: Validates JSON text into an instance (or a batch item); raises ``ValidationError``.
    validate_json: Callable[[str], Any]
    is_batch: bool
    #: Whether ``run`` (``run_batch``) is a coroutine function; else it runs in a thread.
    is_async: bool

    @classmethod
    def of(cls, task_type: AnyTaskType) -> _TaskKind:
        is_batch = is_batch_task(task_type)
        method = task_type.run_batch if is_batch else task_type.run  # type: ignore[union-attr]
        return cls(
            validate_json=task_type.__pydantic_validator__.validate_json,
            is_batch=is_batch,
            is_async=inspect.iscoroutinefunction(method),
        )


def _failed_items(result: object, count: int, task_type: type[BatchTask]) -> dict[int, Any]:
    """The failed item indexes of a ``run_batch`` result, with their errors; raises
    :class:`InvalidTaskError` for a result that breaks the contract."""
    name = f"{task_type.__qualname__}.run_batch"
    if result is None:
        return {}
    if isinstance(result, BatchTaskResult):
        bad = sorted(i for i in result.failed if i >= count)
        if bad:
            raise InvalidTaskError(
                f"{name} reported failed item {bad[0]}, but the batch has {count} items; "
                "the whole batch is kept for a retry"
            )
        return dict(result.failed)
    if isinstance(result, list | tuple):
        if len(result) != count:
            raise InvalidTaskError(
                f"{name} returned {len(result)} outcomes for {count} items; the whole batch "
                "is kept for a retry"
            )
        failed: dict[int, Any] = {}
        for index, outcome in enumerate(result):
            if isinstance(outcome, BaseException | str):
                failed[index] = outcome
            elif outcome is not None:
                raise InvalidTaskError(
                    f"{name} returned {type(outcome).__name__} as the outcome of item {index}; "
                    "use None for success and an exception or a string for failure"
                )
        return failed
    raise InvalidTaskError(
        f"{name} returned {type(result).__name__}; return None, a list with one outcome per "
        "item, or a BatchTaskResult"
    )


def _payload_error(
    what: str, task_type: type[Task] | type[BatchTask], error: ValidationError
) -> PayloadValidationError:
    problems = []
    for detail in error.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in detail["loc"]) or "(payload)"
        problems.append(f"{location}: {detail['msg']}")
    return PayloadValidationError(
        f"{what} does not fit {task_type.__qualname__}: {'; '.join(problems)}"
    )


# A JSON string (with escapes) or one of the structural characters.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]')
_KINDS = {"{": "an object", '"': "a string", "t": "a boolean", "f": "a boolean", "n": "null"}


def split_json_array(text: str) -> list[str]:
    """The texts of the elements of the JSON array ``text``, exactly as written (surrounding
    whitespace removed). ``text`` must be valid JSON, as PostgreSQL guarantees for a ``json``
    column; a value that is not an array raises ``ValueError`` naming its kind."""
    start = len(text) - len(text.lstrip())
    if text[start : start + 1] != "[":
        raise ValueError(_KINDS.get(text[start : start + 1], "a number"))
    items: list[str] = []
    depth = 0
    item_start = start + 1
    for match in _TOKENS.finditer(text, start):
        token = match.group()
        if token[0] == '"':
            continue
        if token in "[{":
            depth += 1
        elif token in "]}":
            depth -= 1
            if depth == 0:
                last = text[item_start : match.start()].strip()
                if last or items:
                    items.append(last)
                break
        elif depth == 1:  # a comma between elements
            items.append(text[item_start : match.start()].strip())
            item_start = match.end()
    return items
