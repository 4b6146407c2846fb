"""Reliability test 3: committed enqueues survive a PostgreSQL crash."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from sqlalchemy_graphile import JobHelpers

from ._tasks import Sleep
from .conftest import ChaosDatabase

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(60)]


def test_acknowledged_jobs_survive_an_immediate_stop(chaos_db: ChaosDatabase) -> None:
    with chaos_db.connect() as db:  # the server's defaults, which the guarantee relies on
        assert db.execute("show synchronous_commit").fetchone() == ("on",)
        assert db.execute("show fsync").fetchone() == ("on",)
    acknowledged: list[int] = []
    with chaos_db.engine(pooled=True) as engine:
        for number in range(1000):
            with Session(engine) as session, session.begin():
                job = JobHelpers(session).add_job(Sleep(tag=str(number)))
            # Only now has COMMIT returned: the job is acknowledged.
            acknowledged.append(job.id)

    chaos_db.cluster.stop("immediate")
    chaos_db.cluster.start()

    with chaos_db.connect() as db:
        stored = {i for (i,) in db.execute("select id from graphile_worker._private_jobs")}
    assert len(acknowledged) == 1000
    assert set(acknowledged) - stored == set()
    assert stored == set(acknowledged)
