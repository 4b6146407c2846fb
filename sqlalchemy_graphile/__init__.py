"""sqlalchemy-graphile: a PostgreSQL job queue for SQLAlchemy, schema-compatible with
Graphile Worker (Node) and its Rust port.

Define tasks as pydantic models, add jobs inside your own SQLAlchemy transactions with
:class:`JobHelpers` / :class:`AsyncJobHelpers`, and run them with :class:`Worker`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._identifiers import DEFAULT_SCHEMA, quote_identifier, validate_schema_name
from ._recovery import RecoveredJob, RegisteredWorker, SweepResult
from .context import WorkerContext
from .cron import CronItem, CronItemOptions, TimestampDigest, parse_crontab
from .errors import (
    BatchJobError,
    ConfigurationError,
    CrontabError,
    DatabaseConnectionError,
    GraphileWorkerError,
    InvalidBatchResultError,
    InvalidCallbackError,
    InvalidIdentifierError,
    InvalidJobSpecError,
    InvalidPayloadError,
    InvalidTaskError,
    JobScheduleError,
    JobScheduleRefusedError,
    JobScheduleSkippedError,
    JobSpecValidationError,
    PayloadNotSerializableError,
    PayloadValidationError,
    SchemaError,
    SchemaNotInstalledError,
    SchemaTooNewError,
    SchemaTooOldError,
    WorkerStateError,
)
from .events import (
    CronEvent,
    CronJob,
    HeartbeatEvent,
    HookErrorEvent,
    JobEvent,
    JobRecoveredEvent,
    ListenEvent,
    LocalQueueEvent,
    LocalQueueMode,
    PoolErrorEvent,
    PoolEvent,
    RecoveryEvent,
    ResetLockedEvent,
    SignalEvent,
    SlotEvent,
    WorkerEvent,
    WorkerEvents,
)
from .hooks import JobRecovery, JobRun, JobRunOutcome, JobRunResult, JobToSchedule, WorkerPlugin
from .job import Job
from .job_spec import JobKeyMode, JobSpec, RawJobSpec
from .tasks import BatchTask, BatchTaskResult, Task
from .worker import RefetchDelay, Worker

if TYPE_CHECKING:
    from .helpers import AsyncJobHelpers, JobHelpers
    from .utils import WorkerUtils

__version__ = "0.1.0"

# Imported on first use: they pull in SQLAlchemy's asyncio extension and ORM, which a worker
# process does not otherwise need (its start-up is faster without them).
_LAZY = {"AsyncJobHelpers": ".helpers", "JobHelpers": ".helpers", "WorkerUtils": ".utils"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_SCHEMA",
    "AsyncJobHelpers",
    "BatchJobError",
    "BatchTask",
    "BatchTaskResult",
    "ConfigurationError",
    "CronEvent",
    "CronItem",
    "CronItemOptions",
    "CronJob",
    "CrontabError",
    "DatabaseConnectionError",
    "GraphileWorkerError",
    "HeartbeatEvent",
    "HookErrorEvent",
    "InvalidBatchResultError",
    "InvalidCallbackError",
    "InvalidIdentifierError",
    "InvalidJobSpecError",
    "InvalidPayloadError",
    "InvalidTaskError",
    "Job",
    "JobEvent",
    "JobHelpers",
    "JobKeyMode",
    "JobRecoveredEvent",
    "JobRecovery",
    "JobRun",
    "JobRunOutcome",
    "JobRunResult",
    "JobScheduleError",
    "JobScheduleRefusedError",
    "JobScheduleSkippedError",
    "JobSpec",
    "JobSpecValidationError",
    "JobToSchedule",
    "ListenEvent",
    "LocalQueueEvent",
    "LocalQueueMode",
    "PayloadNotSerializableError",
    "PayloadValidationError",
    "PoolErrorEvent",
    "PoolEvent",
    "RawJobSpec",
    "RecoveredJob",
    "RecoveryEvent",
    "RefetchDelay",
    "RegisteredWorker",
    "ResetLockedEvent",
    "SchemaError",
    "SchemaNotInstalledError",
    "SchemaTooNewError",
    "SchemaTooOldError",
    "SignalEvent",
    "SlotEvent",
    "SweepResult",
    "Task",
    "TimestampDigest",
    "Worker",
    "WorkerContext",
    "WorkerEvent",
    "WorkerEvents",
    "WorkerPlugin",
    "WorkerStateError",
    "WorkerUtils",
    "__version__",
    "parse_crontab",
    "quote_identifier",
    "validate_schema_name",
]
