"""What the pages and the API share: the options, the database access, the actions, the
sampler, the renderer and the CSRF signer of one dashboard."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields, is_dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.requests import Request

from ..cron import CronItem
from ._actions import Actions
from ._auth import DashboardAuth
from ._queries import DashboardQueries
from ._render import Renderer
from ._sampler import ThroughputSampler
from ._security import Csrf

#: Where the guard leaves the signed-in user's name in the ASGI scope.
USER_SCOPE_KEY = "sqlalchemy_graphile.dashboard.user"


@dataclass(frozen=True, slots=True)
class Core:
    """One dashboard's parts. ``statement_timeout_ms`` bounds every read statement."""

    schema: str
    auth: DashboardAuth
    read_only: bool
    title: str
    crontab: tuple[CronItem, ...]
    refresh_seconds: float
    statement_timeout_ms: int
    engine: AsyncEngine
    queries: DashboardQueries
    actions: Actions
    sampler: ThroughputSampler
    renderer: Renderer
    csrf: Csrf

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction that is rolled back at the end, its statements
        limited to ``statement_timeout_ms``."""
        async with self.engine.connect() as connection, connection.begin():
            await self.queries.limit_statement_time(connection, self.statement_timeout_ms)
            yield connection


def base_path(request: Request) -> str:
    """Where the dashboard is mounted (``""`` at the root), for building links."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def route_path(request: Request) -> str:
    """The request's path inside the dashboard."""
    path: str = request.scope["path"]
    root: str = request.scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def user_of(request: Request) -> str:
    """The name the guard authenticated the request as."""
    return str(request.scope.get(USER_SCOPE_KEY, ""))


def jsonable(value: Any) -> Any:
    """``value`` with dataclasses as objects and datetimes as ISO 8601 text."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
