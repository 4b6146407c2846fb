"""Mount the job queue dashboard in a FastAPI application, behind the application's own
sign-in.

FastAPI runs no dependencies for a mounted application, so the dashboard is given the same
rule the application's own admin routes depend on, as a ``TrustMountingApp`` check. The
dashboard's lifespan does not run when it is mounted; the application's lifespan closes it.

Run it with the database in ``$DATABASE_URL`` (``pip install
'sqlalchemy-graphile[dashboard]' fastapi``)::

    DATABASE_URL=postgresql://postgres@127.0.0.1/postgres python examples/dashboard_fastapi.py

then open http://127.0.0.1:8000/jobs/ with the cookie ``session=demo-admin``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, HTTPException, Request

from sqlalchemy_graphile.dashboard import TrustMountingApp, dashboard_app

# Stands in for the application's session store.
SESSIONS = {"demo-admin": ("ada", "admin"), "demo-user": ("bob", "user")}


def admin_name(request: Request) -> str | None:
    """The signed-in administrator's name, or ``None``: the application's one rule for who
    may administer it."""
    session = SESSIONS.get(request.cookies.get("session", ""))
    return session[0] if session is not None and session[1] == "admin" else None


def require_admin(request: Request) -> str:
    """The dependency the application's own admin routes use."""
    name = admin_name(request)
    if name is None:
        raise HTTPException(status_code=403, detail="administrators only")
    return name


def create_app(database_url: str) -> FastAPI:
    """The application, with the dashboard at ``/jobs``."""
    dashboard = dashboard_app(database_url, auth=TrustMountingApp(admin_name))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await dashboard.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/admin/whoami")
    def whoami(admin: str = Depends(require_admin)) -> dict[str, str]:
        return {"admin": admin}

    app.mount("/jobs", dashboard)
    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(os.environ["DATABASE_URL"]), host="127.0.0.1", port=8000)
