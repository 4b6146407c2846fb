"""``sqlalchemy_graphile.models`` describes the installed schema and can be queried."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, func, pool, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from sqlalchemy_graphile import models
from sqlalchemy_graphile.migrations import install


def differences(engine: Engine, schema: str = "graphile_worker") -> list[Any]:
    """What Alembic's autogenerate finds between :data:`models.metadata` and ``schema``."""

    def include_object(obj: Any, name: Any, type_: str, reflected: bool, compare: Any) -> bool:
        return not (type_ == "table" and obj.info.get("is_view"))  # views are not reflected

    def include_name(name: str | None, type_: str, parent: Any) -> bool:
        return type_ != "schema" or name == schema

    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "include_schemas": True,
                "include_object": include_object,
                "include_name": include_name,
                "compare_type": True,
                "compare_server_default": True,
            },
        )
        return list(compare_metadata(context, models.metadata))


def test_models_match_the_installed_schema(sync_engine: Engine) -> None:
    assert differences(sync_engine) == []


def test_the_comparison_sees_a_missing_schema(empty_db_url: str) -> None:
    engine = create_engine(
        empty_db_url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=pool.NullPool
    )
    try:
        added = {diff[1].name for diff in differences(engine) if diff[0] == "add_table"}
    finally:
        engine.dispose()
    assert added == {
        "_private_jobs",
        "_private_job_queues",
        "_private_tasks",
        "_private_known_crontabs",
        "_private_workers",
        "migrations",
    }


def test_query_the_jobs_view_from_a_session(sync_engine: Engine, db: psycopg.Connection) -> None:
    db.execute("select graphile_worker.add_job('send_email', queue_name := 'mail')")
    db.execute("select graphile_worker.add_job('send_email', job_key := 'k', flags := '{a}')")
    db.execute("select graphile_worker.add_job('resize')")
    with Session(sync_engine) as session:
        jobs = session.scalars(select(models.JobView).order_by(models.JobView.id)).all()
        assert [(j.task_identifier, j.queue_name, j.key) for j in jobs] == [
            ("send_email", "mail", None),
            ("send_email", None, "k"),
            ("resize", None, None),
        ]
        assert jobs[1].flags == {"a": True}
        counts = session.execute(
            select(models.JobView.task_identifier, func.count())
            .group_by(models.JobView.task_identifier)
            .order_by(models.JobView.task_identifier)
        ).all()
        assert [tuple(row) for row in counts] == [("resize", 1), ("send_email", 2)]
        payloads = session.scalars(select(models.PrivateJob.payload)).all()
        assert payloads == [{}, {}, {}]


def test_job_is_a_deprecated_name_of_job_view() -> None:
    with pytest.deprecated_call(match="use models.JobView"):
        assert models.Job is models.JobView
    with pytest.raises(AttributeError):
        models.JobViews  # noqa: B018


async def test_query_the_jobs_view_from_an_async_session(
    async_engine: AsyncEngine, db: psycopg.Connection
) -> None:
    db.execute("select graphile_worker.add_job('send_email', max_attempts := 3)")
    async with AsyncSession(async_engine) as session:
        job = (await session.scalars(select(models.JobView))).one()
        assert (job.task_identifier, job.max_attempts, job.attempts) == ("send_email", 3, 0)


def test_another_schema_through_schema_translate_map(empty_db_url: str) -> None:
    engine = create_engine(
        empty_db_url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=pool.NullPool
    )
    try:
        with engine.begin() as connection:
            install(connection, "Jobs$Q")
        with psycopg.connect(empty_db_url, autocommit=True) as conn:
            conn.execute("""select "Jobs$Q".add_job('elsewhere')""")
        translated = engine.execution_options(schema_translate_map={"graphile_worker": "Jobs$Q"})
        with Session(translated) as session:
            identifiers = session.scalars(select(models.JobView.task_identifier)).all()
        assert identifiers == ["elsewhere"]
    finally:
        engine.dispose()
