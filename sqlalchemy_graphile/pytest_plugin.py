"""The pytest plugin: install the job queue schema once per test run, then assert on the
jobs your code adds.

Installing sqlalchemy-graphile does not turn it on. Turn it on in the root ``conftest.py``::

    pytest_plugins = ["sqlalchemy_graphile.pytest_plugin"]

or with ``graphile_worker_plugin = true`` in your pytest configuration, or with
``-p sqlalchemy_graphile.pytest_plugin`` on the command line.

Fixtures (all session-scoped; override them in your ``conftest.py``):

* ``graphile_worker_schema``: the schema name, ``$GRAPHILE_WORKER_SCHEMA`` or
  ``graphile_worker``.
* ``graphile_worker_database_url``: where to install the schema. By default the template
  database of pytest-postgresql's ``postgresql_proc`` fixture, so every database its
  ``postgresql`` fixture makes has the schema; override it to return your own test
  database's URL, or the template of another pytest-postgresql process fixture
  (:func:`postgresql_template_url`).
* ``graphile_worker_database``: installs the schema there (once per test run, and once per
  xdist worker; concurrent installs into one database are serialised) and returns that URL.
  Make the fixture that creates your engine depend on it.

The assertions are the functions of :mod:`sqlalchemy_graphile.testing`
(:func:`~sqlalchemy_graphile.testing.enqueued_jobs`,
:func:`~sqlalchemy_graphile.testing.assert_enqueued`,
:func:`~sqlalchemy_graphile.testing.assert_not_enqueued`), and
:func:`~sqlalchemy_graphile.testing.run_jobs` runs the queued jobs; they work through the
session or connection your test already has, in its transaction.
"""

from __future__ import annotations

from typing import Protocol

import pytest
from sqlalchemy import URL

from ._identifiers import resolve_schema
from .testing import database_url, install_schema

#: The pytest-postgresql process fixture whose template database gets the schema by default.
DEFAULT_POSTGRESQL_FIXTURE = "postgresql_proc"


class PostgreSQLExecutor(Protocol):
    """What pytest-postgresql's process fixtures (``postgresql_proc``, ``postgresql_noproc``
    and the factories' fixtures) yield, as far as the plugin needs it."""

    host: str
    port: int
    user: str
    password: str | None

    @property
    def template_dbname(self) -> str: ...


def postgresql_template_url(executor: PostgreSQLExecutor) -> URL:
    """The URL of the template database of a pytest-postgresql process fixture: install the
    schema there and every database its client fixture makes has it::

        @pytest.fixture(scope="session")
        def graphile_worker_database_url(postgresql_noproc):
            return postgresql_template_url(postgresql_noproc)
    """
    return database_url(
        host=executor.host,
        port=executor.port,
        user=executor.user,
        password=executor.password,
        dbname=executor.template_dbname,
    )


@pytest.fixture(scope="session")
def graphile_worker_schema() -> str:
    """The job queue's schema name: ``$GRAPHILE_WORKER_SCHEMA`` or ``graphile_worker``.
    Override this fixture to install another; pass the same name as ``schema=`` to the
    helpers and the assertions."""
    return resolve_schema()


@pytest.fixture(scope="session")
def graphile_worker_database_url(request: pytest.FixtureRequest) -> str | URL:
    """The database ``graphile_worker_database`` installs the schema into. By default the
    template database of pytest-postgresql's ``postgresql_proc``; override this fixture to
    return your test database's URL (``postgresql://...``, any driver)."""
    try:
        executor = request.getfixturevalue(DEFAULT_POSTGRESQL_FIXTURE)
    except pytest.FixtureLookupError:
        pytest.fail(
            "graphile_worker_database does not know where to install the job queue schema: "
            "override the graphile_worker_database_url fixture in your conftest.py to return "
            "the URL of your test database (or install pytest-postgresql, whose "
            f"{DEFAULT_POSTGRESQL_FIXTURE} template is the default)",
            pytrace=False,
        )
    return postgresql_template_url(executor)


@pytest.fixture(scope="session")
def graphile_worker_database(
    graphile_worker_database_url: str | URL, graphile_worker_schema: str
) -> str | URL:
    """Install the job queue schema, once per test run, into the database of
    ``graphile_worker_database_url`` (a schema already there is adopted), and return that
    URL. Commits the installation; never removes it."""
    install_schema(graphile_worker_database_url, graphile_worker_schema)
    return graphile_worker_database_url
