"""Helpers for testing applications that add jobs: what the code under test enqueued, and
the job queue schema in test databases.

Read the jobs through the test's own session or connection, so that rows its transaction
has not committed are seen (a test that rolls back at the end leaves nothing behind)::

    from sqlalchemy_graphile.testing import assert_enqueued

    def test_sign_up(session):
        sign_up(session, "ada@example.com")
        [entry] = assert_enqueued(session, SendEmail, to="ada@example.com")
        assert entry.job.queue_name == "mail"

:func:`run_jobs` runs the queued jobs in that same transaction, as a worker would::

    def test_welcome_email_is_sent(session, mailer):
        sign_up(session, "ada@example.com")
        [run] = run_jobs(session, [SendEmail], extensions=[mailer])
        assert run.status == "completed"

With an ``AsyncSession`` or ``AsyncConnection``, await them. Install the schema once per
test run with :func:`install_schema` (a URL) or :func:`load_schema` (pytest-postgresql's
template). The pytest plugin, :mod:`sqlalchemy_graphile.pytest_plugin`, wraps these in
fixtures. Nothing here imports pytest.
"""

from __future__ import annotations

from ._enqueued import EnqueuedJob, assert_enqueued, assert_not_enqueued, enqueued_jobs
from ._run_jobs import JobFailedError, RanJob, RunStatus, run_jobs
from ._schema import database_url, install_schema, load_schema

__all__ = [
    "EnqueuedJob",
    "JobFailedError",
    "RanJob",
    "RunStatus",
    "assert_enqueued",
    "assert_not_enqueued",
    "database_url",
    "enqueued_jobs",
    "install_schema",
    "load_schema",
    "run_jobs",
]
