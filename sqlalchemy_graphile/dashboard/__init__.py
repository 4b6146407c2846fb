"""A web dashboard and JSON API for the job queue: an ASGI application (Starlette).

Install the extra, then mount it in your Starlette or FastAPI application::

    pip install 'sqlalchemy-graphile[dashboard]'

    from sqlalchemy_graphile.dashboard import BasicAuth, dashboard_app

    app.mount("/jobs", dashboard_app(engine, auth=BasicAuth("admin", password)))

or serve it on its own with ``sqlalchemy-graphile dashboard``. Pages: an overview (counts by
state per task and queue, the oldest ready job, throughput), the jobs list with filters and
search, each job, queues, cron items and workers; actions with a confirmation (run now,
reschedule, retry, mark failed, complete, remove by key, force-unlock), one job at a time or
every job matching a filter. See ``docs/dashboard.md``.

Nothing here is imported by ``import sqlalchemy_graphile``.
"""

from __future__ import annotations

try:
    import jinja2  # noqa: F401
    import starlette  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised in a fresh interpreter
    raise ImportError(
        "the dashboard needs its extra: pip install 'sqlalchemy-graphile[dashboard]' "
        f"({error.name} is not installed)",
        name=error.name,
    ) from error

from ._app import APPLICATION_NAME, DashboardApp, dashboard_app
from ._auth import BasicAuth, BearerAuth, DashboardAuth, NoAuth, TrustMountingApp

__all__ = [
    "APPLICATION_NAME",
    "BasicAuth",
    "BearerAuth",
    "DashboardApp",
    "DashboardAuth",
    "NoAuth",
    "TrustMountingApp",
    "dashboard_app",
]
