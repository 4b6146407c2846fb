"""Configuration, from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy import URL, make_url


@dataclass(frozen=True)
class Settings:
    """``DATABASE_URL`` (any ``postgresql://`` URL; the service uses asyncpg);
    ``WORKER_IN_APP``: ``1`` (the default) runs a worker inside the web app, ``0`` leaves
    the jobs to a worker process (``python -m signup_service.worker``); and
    ``DASHBOARD_PASSWORD``: when set, the job queue's dashboard is served at ``/jobs``
    behind HTTP basic authentication as user ``admin``."""

    database_url: URL
    worker_in_app: bool = True
    dashboard_password: str | None = None

    @classmethod
    def from_environment(cls) -> Settings:
        url = make_url(os.environ["DATABASE_URL"]).set(drivername="postgresql+asyncpg")
        return cls(
            database_url=url,
            worker_in_app=os.environ.get("WORKER_IN_APP", "1") == "1",
            dashboard_password=os.environ.get("DASHBOARD_PASSWORD") or None,
        )
