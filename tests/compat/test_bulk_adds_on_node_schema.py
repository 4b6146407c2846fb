"""Bulk adds through our helpers on a schema the real Node graphile-worker 0.17 installed.

Node's ``add_jobs`` returns its rows in no particular order; every bulk add must still hand
back the job for ``jobs[i]`` at index ``i``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, pool
from sqlalchemy.orm import Session

from sqlalchemy_graphile import JobHelpers, JobSpec, RawJobSpec
from tests.compat.conftest import NodeGraphileWorker

pytestmark = [pytest.mark.compat, pytest.mark.timeout(300)]


@pytest.fixture
def node_schema_engine(node: NodeGraphileWorker, empty_db_url: str) -> Iterator[Engine]:
    """An engine on a database whose schema Node's ``--schema-only`` installed."""
    node.cli("--schema-only", db_url=empty_db_url)
    engine = create_engine(
        empty_db_url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=pool.NullPool
    )
    yield engine
    engine.dispose()


def test_the_reported_batch_returns_each_spec_its_own_job(node_schema_engine: Engine) -> None:
    with Session(node_schema_engine) as session, session.begin():
        helpers = JobHelpers(session)
        helpers.add_raw_job("a", {"setup": True})
        helpers.add_raw_job("b", {"setup": True})
    identifiers = ["a", "b", "a", "c", "b"]
    with Session(node_schema_engine) as session, session.begin():
        jobs = JobHelpers(session).add_raw_jobs(
            [RawJobSpec(identifier=t, payload={"i": i}) for i, t in enumerate(identifiers)]
        )
    assert [(job.task_identifier, job.payload) for job in jobs] == [
        (t, {"i": i}) for i, t in enumerate(identifiers)
    ]
    assert len({job.id for job in jobs}) == len(identifiers)


def test_keyed_unkeyed_and_queued_specs_pair_with_their_rows(node_schema_engine: Engine) -> None:
    with Session(node_schema_engine) as session, session.begin():
        JobHelpers(session).add_raw_job("merge", [{"n": 0}], JobSpec(job_key="batch"))
    specs = [
        RawJobSpec(identifier="x", payload={"n": 1}, spec=JobSpec(queue_name="q1")),
        RawJobSpec(identifier="merge", payload=[{"n": 1}], spec=JobSpec(job_key="batch")),
        RawJobSpec(identifier="y", payload={"n": 2}, spec=JobSpec(job_key="fresh", priority=4)),
        RawJobSpec(identifier="x", payload={"n": 1}, spec=JobSpec(queue_name="q2")),
        RawJobSpec(identifier="x", payload={"n": 1}),
    ]
    with Session(node_schema_engine) as session, session.begin():
        jobs = JobHelpers(session).add_raw_jobs(specs)
    assert [(j.task_identifier, j.queue_name, j.key, j.payload) for j in jobs] == [
        ("x", "q1", None, {"n": 1}),
        ("merge", None, "batch", [{"n": 0}, {"n": 1}]),
        ("y", None, "fresh", {"n": 2}),
        ("x", "q2", None, {"n": 1}),
        ("x", None, None, {"n": 1}),
    ]
    assert jobs[1].revision == 1
