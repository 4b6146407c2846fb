"""Tasks: pydantic models that are both a job's payload and the code that runs it.

:class:`Task` is one job per instance; :class:`BatchTask` is one job holding a JSON array
of items, run together by :meth:`BatchTask.run_batch`. Both check their ``IDENTIFIER``
when the class is created and raise :class:`~sqlalchemy_graphile.errors.InvalidTaskError`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict

from .errors import InvalidBatchResultError, InvalidJobSpecError, InvalidTaskError
from .job_spec import check_task_identifier

if TYPE_CHECKING:
    from .context import WorkerContext

#: What a batch item's outcome may be: ``None`` for success, an exception or a message for
#: failure.
ItemOutcome = BaseException | str | None


class _TaskBase(BaseModel):
    # Unknown keys in a stored payload are ignored, so older workers can run newer payloads.
    model_config = ConfigDict(extra="ignore")

    IDENTIFIER: ClassVar[str]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        identifier = cls.__dict__.get("IDENTIFIER")
        if identifier is None:
            return  # an abstract base for other tasks; it cannot be registered on a worker
        try:
            check_task_identifier(identifier)
        except InvalidJobSpecError as error:
            raise InvalidTaskError(f"{cls.__qualname__}.IDENTIFIER is invalid: {error}") from None

    @classmethod
    def task_identifier(cls) -> str:
        """The class's ``IDENTIFIER``; :class:`InvalidTaskError` if it has none."""
        identifier = getattr(cls, "IDENTIFIER", None)
        if identifier is None:
            raise InvalidTaskError(
                f"{cls.__qualname__} has no IDENTIFIER: declare "
                '`IDENTIFIER: ClassVar[str] = "..."` on the class'
            )
        return str(identifier)


class Task(_TaskBase):
    """A job type. Subclass it, declare fields, an ``IDENTIFIER`` and ``run``::

        class SendEmail(Task):
            IDENTIFIER: ClassVar[str] = "send_email"
            to: str

            async def run(self, ctx: WorkerContext) -> None: ...

    The instance is the payload: it is stored as JSON when the job is added and validated
    from the stored JSON when the job runs. ``run`` may be ``async def`` (it runs on the
    worker's event loop) or a plain ``def`` (it runs in a thread). Returning completes the
    job; raising fails it and it is retried with exponential backoff until ``max_attempts``.
    """

    def run(self, ctx: WorkerContext) -> Awaitable[None] | None:
        """Do the job. Override this (as ``async def`` or ``def``)."""
        raise NotImplementedError(f"{type(self).__qualname__} does not implement run()")

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "IDENTIFIER" in cls.__dict__ and cls.run is Task.run:
            raise InvalidTaskError(f"{cls.__qualname__} must implement run(self, ctx)")


class BatchTaskResult:
    """Per-item outcome of a batch, returned from :meth:`BatchTask.run_batch`.

    ``BatchTaskResult(failed={2: ValueError("bounced")})`` says item 2 failed and every other
    item succeeded; :meth:`from_outcomes` builds one from a list with one entry per item.
    An index that is not a non-negative ``int``, or a failure that is neither an exception
    nor a string, raises :class:`InvalidBatchResultError` (a ``TypeError`` and a
    ``ValueError``).
    """

    __slots__ = ("failed",)

    def __init__(self, failed: Mapping[int, BaseException | str] | None = None) -> None:
        self.failed: dict[int, BaseException | str] = dict(failed or {})
        for index, error in self.failed.items():
            if not isinstance(index, int) or index < 0:
                raise InvalidBatchResultError(
                    f"failed item index must be a non-negative int, not {index!r}"
                )
            if not isinstance(error, BaseException | str):
                raise InvalidBatchResultError(
                    f"failure of item {index} must be an exception or a string, "
                    f"not {type(error).__name__}"
                )

    @classmethod
    def all_succeeded(cls) -> BatchTaskResult:
        """Every item succeeded."""
        return cls()

    @classmethod
    def from_outcomes(cls, outcomes: Sequence[ItemOutcome]) -> BatchTaskResult:
        """One outcome per item: ``None`` for success, an exception or a message for failure."""
        return cls({i: o for i, o in enumerate(outcomes) if o is not None})

    def __repr__(self) -> str:
        return f"BatchTaskResult(failed={self.failed!r})"


class BatchTask(_TaskBase):
    """A job type whose job holds a JSON array of items, run together.

    The subclass is the item model::

        class Notify(BatchTask):
            IDENTIFIER: ClassVar[str] = "notify"
            user_id: str

            @classmethod
            async def run_batch(cls, items: list[Self], ctx: WorkerContext) -> None: ...

    ``run_batch`` returns ``None`` (all succeeded), a list of per-item outcomes of the same
    length and order (``None`` = success, an exception or a string = failure) or a
    :class:`BatchTaskResult`; raising fails the whole batch. Failed items are retried with
    their original payloads; succeeded items are removed from the job.
    """

    @classmethod
    def run_batch(
        cls, items: list[Self], ctx: WorkerContext
    ) -> (
        Awaitable[Sequence[ItemOutcome] | BatchTaskResult | None]
        | Sequence[ItemOutcome]
        | BatchTaskResult
        | None
    ):
        """Run the items. Override this classmethod (``async def`` or ``def``)."""
        raise NotImplementedError(f"{cls.__qualname__} does not implement run_batch()")

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "IDENTIFIER" not in cls.__dict__:
            return
        method = inspect.getattr_static(cls, "run_batch")
        if not isinstance(method, classmethod):
            raise InvalidTaskError(f"{cls.__qualname__}.run_batch must be a classmethod")
        if cls.run_batch.__func__ is BatchTask.run_batch.__func__:  # type: ignore[attr-defined]
            raise InvalidTaskError(f"{cls.__qualname__} must implement run_batch(cls, items, ctx)")


AnyTaskType = type[Task] | type[BatchTask]


def is_batch_task(task_type: type[Any]) -> bool:
    """Whether ``task_type`` is a :class:`BatchTask` subclass."""
    return isinstance(task_type, type) and issubclass(task_type, BatchTask)


def check_task_type(task_type: object) -> AnyTaskType:
    """Return ``task_type`` if it is a registrable task class, else raise
    :class:`InvalidTaskError`."""
    if not (
        isinstance(task_type, type)
        and issubclass(task_type, Task | BatchTask)
        and task_type not in (Task, BatchTask)
    ):
        raise InvalidTaskError(f"{task_type!r} is not a Task or BatchTask subclass")
    task_type.task_identifier()
    return task_type
