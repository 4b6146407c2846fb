"""The exceptions raised by sqlalchemy-graphile.

Every error we raise derives from :class:`GraphileWorkerError`, so one ``except`` clause
catches them all. Each also derives from the matching built-in (``ValueError`` or
``TypeError`` for bad input, which is refused before any SQL is sent; ``RuntimeError`` for
a call the object's state does not allow; ``ConnectionError`` for an unreachable database).

::

    GraphileWorkerError
    ├── InvalidIdentifierError (ValueError)       a schema name that is not a safe identifier
    ├── InvalidTaskError (TypeError)              a Task class that breaks the task contract
    │   └── InvalidBatchResultError (ValueError)  a BatchTaskResult with a bad index or failure
    ├── InvalidPayloadError (ValueError)          a payload that cannot be stored as JSON
    │   └── PayloadNotSerializableError (TypeError)
    ├── InvalidJobSpecError (ValueError)          a job spec the database would refuse
    │   └── JobSpecValidationError                a bad JobSpec field (a pydantic error too)
    ├── ConfigurationError (ValueError)           bad worker / utils options
    │   ├── CrontabError                          a crontab line or cron item that is not valid
    │   └── InvalidCallbackError (TypeError)      an event subscriber that is not callable
    ├── DatabaseConnectionError (ConnectionError) the worker cannot reach its database
    ├── WorkerStateError (RuntimeError)           e.g. run() on a worker that is running
    ├── SchemaError                               the database schema is missing or incompatible
    │   ├── SchemaNotInstalledError
    │   ├── SchemaTooOldError
    │   └── SchemaTooNewError                     a newer *breaking* migration (CLI exit code 57)
    ├── PayloadValidationError (ValueError)       a stored payload does not fit the task model
    ├── JobScheduleError                          a plugin stopped an add (before_job_schedule)
    │   ├── JobScheduleSkippedError               ... skipping the job on purpose
    │   └── JobScheduleRefusedError               ... refusing it with a reason
    └── BatchJobError                             the error of a batch job with failed items
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError


class GraphileWorkerError(Exception):
    """Base class of every exception raised by sqlalchemy-graphile."""


class InvalidIdentifierError(GraphileWorkerError, ValueError):
    """A schema name was rejected because it is not a safe SQL identifier."""


class InvalidTaskError(GraphileWorkerError, TypeError):
    """A task class does not follow the task contract (e.g. a bad ``IDENTIFIER``)."""


class InvalidBatchResultError(InvalidTaskError, ValueError):
    """A :class:`BatchTaskResult` was built with an item index that is not a non-negative
    ``int`` or a failure that is neither an exception nor a string."""


class InvalidPayloadError(GraphileWorkerError, ValueError):
    """A payload cannot be stored: not JSON, too large, NaN, NUL characters, ..."""


class PayloadNotSerializableError(InvalidPayloadError, TypeError):
    """A raw payload holds a value that has no JSON form (a set, an object, ...)."""


class InvalidJobSpecError(GraphileWorkerError, ValueError):
    """A job spec or call argument would be refused by the database."""


class JobSpecValidationError(InvalidJobSpecError, ValidationError):
    """A :class:`JobSpec` field is not valid. It is pydantic's ``ValidationError`` too, with
    the same text and :meth:`errors` (one entry per bad field), so code that catches either
    keeps working."""


class ConfigurationError(GraphileWorkerError, ValueError):
    """Options given to a worker, the CLI or ``WorkerUtils`` are not valid."""


class CrontabError(ConfigurationError):
    """A crontab line or cron item is not valid. ``line`` is the crontab line number, when
    the error comes from crontab text."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class InvalidCallbackError(ConfigurationError, TypeError):
    """A callback given to the worker (an event subscriber) is not callable."""


class DatabaseConnectionError(GraphileWorkerError, ConnectionError):
    """The worker could not connect to its database, or could not use it, when it started.
    The message names the host, port, database and schema; the driver's error is the
    ``__cause__``."""


class WorkerStateError(GraphileWorkerError, RuntimeError):
    """A worker was asked for something its state does not allow, such as ``run()`` while
    it is running."""


class SchemaError(GraphileWorkerError):
    """The ``graphile_worker`` schema is missing or not compatible with this version."""


class SchemaNotInstalledError(SchemaError):
    """The schema has not been installed: raised by a worker at start-up and by every add
    (and admin) call. Install it with ``sqlalchemy-graphile migrate``, ``alembic upgrade
    head`` (our revisions in your history) or ``WorkerUtils.migrate()``."""


class SchemaTooOldError(SchemaError):
    """The schema was installed by an old Graphile Worker (ledger below revision 19)."""


class SchemaTooNewError(SchemaError):
    """The schema contains a breaking migration newer than this version understands.

    The command line interface exits with status 57 on this error, like Graphile Worker.
    """

    exit_code = 57

    def __init__(self, message: str, *, latest_breaking: int, supported: int) -> None:
        super().__init__(message)
        self.latest_breaking = latest_breaking
        self.supported = supported


class PayloadValidationError(GraphileWorkerError, ValueError):
    """A stored payload did not validate against the task's model when the job ran."""


class BatchJobError(GraphileWorkerError):
    """The error of a batch job some of whose items failed: it is the ``error`` of the job's
    ``job:error`` event, its text (``Batch failures:`` and one line per failed item) is the
    job's ``last_error``, and ``errors`` holds the items' own errors. Never raised."""

    def __init__(self, errors: Sequence[BaseException | str]) -> None:
        lines = [str(e) if isinstance(e, str) else _describe(e) for e in errors]
        super().__init__("Batch failures:\n" + "\n".join(lines))
        self.errors = list(errors)


class JobScheduleError(GraphileWorkerError):
    """A plugin's ``before_job_schedule`` hook stopped an add: nothing was added (for a bulk
    add, none of the jobs). Raised before any SQL."""


class JobScheduleSkippedError(JobScheduleError):
    """Raise it from ``before_job_schedule`` to skip the job on purpose (it is not logged
    as a hook failure); the add raises it to its caller."""

    def __init__(self, message: str = "a plugin skipped the job") -> None:
        super().__init__(message)


class JobScheduleRefusedError(JobScheduleError):
    """Raise it from ``before_job_schedule`` to refuse the job with a reason; the add raises
    it to its caller."""


def _describe(error: BaseException) -> str:
    text = str(error)
    return text if text else type(error).__name__


__all__ = [
    "BatchJobError",
    "ConfigurationError",
    "CrontabError",
    "DatabaseConnectionError",
    "GraphileWorkerError",
    "InvalidBatchResultError",
    "InvalidCallbackError",
    "InvalidIdentifierError",
    "InvalidJobSpecError",
    "InvalidPayloadError",
    "InvalidTaskError",
    "JobScheduleError",
    "JobScheduleRefusedError",
    "JobScheduleSkippedError",
    "JobSpecValidationError",
    "PayloadNotSerializableError",
    "PayloadValidationError",
    "SchemaError",
    "SchemaNotInstalledError",
    "SchemaTooNewError",
    "SchemaTooOldError",
    "WorkerStateError",
]
