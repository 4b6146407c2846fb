"""sqlalchemy-graphile: a PostgreSQL job queue for SQLAlchemy, schema-compatible with
Graphile Worker (Node) and its Rust port.

Define tasks as pydantic models, add jobs inside your own SQLAlchemy transactions with
:class:`JobHelpers` / :class:`AsyncJobHelpers`, and run them with :class:`Worker`.
"""

from __future__ import annotations

from ._identifiers import DEFAULT_SCHEMA, quote_identifier, validate_schema_name
from .context import WorkerContext
from .cron import CronItem, CronItemOptions, TimestampDigest, parse_crontab
from .errors import (
    BatchJobError,
    ConfigurationError,
    CrontabError,
    GraphileWorkerError,
    InvalidIdentifierError,
    InvalidJobSpecError,
    InvalidPayloadError,
    InvalidTaskError,
    PayloadNotSerializableError,
    PayloadValidationError,
    SchemaError,
    SchemaNotInstalledError,
    SchemaTooNewError,
    SchemaTooOldError,
)
from .events import (
    CronEvent,
    CronJob,
    JobEvent,
    ListenEvent,
    LocalQueueEvent,
    PoolErrorEvent,
    PoolEvent,
    ResetLockedEvent,
    SignalEvent,
    SlotEvent,
    WorkerEvent,
    WorkerEvents,
)
from .helpers import AsyncJobHelpers, JobHelpers
from .job import Job
from .job_spec import JobKeyMode, JobSpec, RawJobSpec
from .tasks import BatchTask, BatchTaskResult, Task
from .utils import WorkerUtils
from .worker import RefetchDelay, Worker

__version__ = "0.1.0"

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
    "GraphileWorkerError",
    "InvalidIdentifierError",
    "InvalidJobSpecError",
    "InvalidPayloadError",
    "InvalidTaskError",
    "Job",
    "JobEvent",
    "JobHelpers",
    "JobKeyMode",
    "JobSpec",
    "ListenEvent",
    "LocalQueueEvent",
    "PayloadNotSerializableError",
    "PayloadValidationError",
    "PoolErrorEvent",
    "PoolEvent",
    "RawJobSpec",
    "RefetchDelay",
    "ResetLockedEvent",
    "SchemaError",
    "SchemaNotInstalledError",
    "SchemaTooNewError",
    "SchemaTooOldError",
    "SignalEvent",
    "SlotEvent",
    "Task",
    "TimestampDigest",
    "Worker",
    "WorkerContext",
    "WorkerEvent",
    "WorkerEvents",
    "WorkerUtils",
    "__version__",
    "parse_crontab",
    "quote_identifier",
    "validate_schema_name",
]
