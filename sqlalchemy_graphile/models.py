"""The job queue schema as SQLAlchemy ORM models, on their own :data:`metadata`.

These models describe the tables Graphile Worker revision 19 defines, and the registry of
worker pools that revision 20 (worker recovery) adds, so you can query them
from your own sessions (``select(models.JobView).where(...)``). The schema is *installed* by the
Alembic revision (see :mod:`sqlalchemy_graphile.migrations`), not by ``metadata.create_all``:
the SQL functions, the view and the exact constraint names are not expressible here.

Tables are declared in the ``graphile_worker`` schema. To use another schema name, map it
per engine or connection::

    engine = engine.execution_options(schema_translate_map={"graphile_worker": "my_schema"})

Write to the queue through :class:`~sqlalchemy_graphile.JobHelpers` (which calls the SQL
functions), never by inserting rows here: the functions register tasks and queues, apply
job-key rules and wake workers. :class:`JobView` (the ``jobs`` view) is read-only.

``models.Job`` is a deprecated name of :class:`JobView` (it warns): ``Job`` is the row
:class:`~sqlalchemy_graphile.Job` that the add methods return.
"""

from __future__ import annotations

import warnings
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ._identifiers import DEFAULT_SCHEMA

#: The metadata holding every table of the job queue schema.
metadata = MetaData(schema=DEFAULT_SCHEMA)

_TZ = DateTime(timezone=True)


class Base(DeclarativeBase):
    """Declarative base of the job queue models (uses :data:`metadata`)."""

    metadata = metadata


class PrivateJob(Base):
    """A row of ``_private_jobs``: one job, with its payload and lock state."""

    __tablename__ = "_private_jobs"
    __table_args__ = (
        UniqueConstraint("key", name="jobs_key_key1"),
        CheckConstraint("length(key) > 0 and length(key) <= 512", name="jobs_key_check"),
        CheckConstraint("max_attempts >= 1", name="jobs_max_attempts_check"),
        Index(
            "jobs_main_index",
            "priority",
            "run_at",
            postgresql_include=["id", "task_id", "job_queue_id"],
            postgresql_where=text("is_available = true"),
        ),
        Index(
            "jobs_no_queue_index",
            "priority",
            "run_at",
            postgresql_include=["id", "task_id"],
            postgresql_where=text("is_available = true and job_queue_id is null"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    job_queue_id: Mapped[int | None] = mapped_column(Integer)
    task_id: Mapped[int] = mapped_column(Integer)
    payload: Mapped[Any] = mapped_column(JSON, server_default=text("'{}'::json"))
    priority: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    run_at: Mapped[datetime] = mapped_column(_TZ, server_default=func.now())
    attempts: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(SmallInteger, server_default=text("25"))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(_TZ, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(_TZ, server_default=func.now())
    key: Mapped[str | None] = mapped_column(Text)
    locked_at: Mapped[datetime | None] = mapped_column(_TZ)
    locked_by: Mapped[str | None] = mapped_column(Text)
    revision: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    flags: Mapped[dict[str, bool] | None] = mapped_column(JSONB)
    is_available: Mapped[bool] = mapped_column(
        Boolean, Computed("locked_at is null and attempts < max_attempts", persisted=True)
    )


class JobQueue(Base):
    """A row of ``_private_job_queues``: a named queue and its lock."""

    __tablename__ = "_private_job_queues"
    __table_args__ = (
        UniqueConstraint("queue_name", name="job_queues_queue_name_key"),
        CheckConstraint("length(queue_name) <= 128", name="job_queues_queue_name_check"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(always=True), primary_key=True)
    queue_name: Mapped[str] = mapped_column(Text)
    locked_at: Mapped[datetime | None] = mapped_column(_TZ)
    locked_by: Mapped[str | None] = mapped_column(Text)
    is_available: Mapped[bool] = mapped_column(
        Boolean, Computed("locked_at is null", persisted=True)
    )


class TaskIdentifier(Base):
    """A row of ``_private_tasks``: a task identifier and its integer id."""

    __tablename__ = "_private_tasks"
    __table_args__ = (
        UniqueConstraint("identifier", name="tasks_identifier_key"),
        CheckConstraint("length(identifier) <= 128", name="tasks_identifier_check"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(always=True), primary_key=True)
    identifier: Mapped[str] = mapped_column(Text)


class KnownCrontab(Base):
    """A row of ``_private_known_crontabs``: cron bookkeeping for one cron item."""

    __tablename__ = "_private_known_crontabs"

    identifier: Mapped[str] = mapped_column(Text, primary_key=True)
    known_since: Mapped[datetime] = mapped_column(_TZ)
    last_execution: Mapped[datetime | None] = mapped_column(_TZ)


class Migration(Base):
    """A row of the ``migrations`` ledger."""

    __tablename__ = "migrations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[datetime] = mapped_column(_TZ, server_default=func.now())
    breaking: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class RegisteredWorker(Base):
    """A row of ``_private_workers`` (revision 20): a worker pool that heartbeats, under its
    lock owner id, with when it registered, its last heartbeat and its metadata."""

    __tablename__ = "_private_workers"
    __table_args__ = (Index("_private_workers_last_heartbeat_at_idx", "last_heartbeat_at"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    last_heartbeat_at: Mapped[datetime] = mapped_column(_TZ)
    started_at: Mapped[datetime] = mapped_column(_TZ, server_default=func.now())
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)


class JobView(Base):
    """The ``jobs`` view: the stable, read-only public description of a job.

    It has every job column except the payload, with ``task_identifier`` and ``queue_name``
    resolved. Query it from any session; do not add or flush instances.
    """

    __tablename__ = "jobs"
    __table_args__ = {"info": {"is_view": True}}

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    queue_name: Mapped[str | None] = mapped_column(Text)
    task_identifier: Mapped[str] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(SmallInteger)
    run_at: Mapped[datetime] = mapped_column(_TZ)
    attempts: Mapped[int] = mapped_column(SmallInteger)
    max_attempts: Mapped[int] = mapped_column(SmallInteger)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(_TZ)
    updated_at: Mapped[datetime] = mapped_column(_TZ)
    key: Mapped[str | None] = mapped_column(Text)
    locked_at: Mapped[datetime | None] = mapped_column(_TZ)
    locked_by: Mapped[str | None] = mapped_column(Text)
    revision: Mapped[int] = mapped_column(Integer)
    flags: Mapped[dict[str, bool] | None] = mapped_column(JSONB)


def __getattr__(name: str) -> Any:
    if name == "Job":
        warnings.warn(
            "sqlalchemy_graphile.models.Job is deprecated; use models.JobView",
            DeprecationWarning,
            stacklevel=2,
        )
        return JobView
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Base",
    "JobQueue",
    "JobView",
    "KnownCrontab",
    "Migration",
    "PrivateJob",
    "RegisteredWorker",
    "TaskIdentifier",
    "metadata",
]
