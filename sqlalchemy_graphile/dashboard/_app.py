"""The dashboard as an ASGI application: options, routes, the auth guard, error pages and the
lifecycle of the engine and the throughput sampler."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib import resources
from typing import Any

from sqlalchemy import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .._identifiers import resolve_schema
from .._schema_missing import schema_not_installed
from .._urls import async_url, database_url_from_env
from ..cron import CronItem
from ..cron._parser import crontab_items
from ..errors import ConfigurationError, DatabaseConnectionError, GraphileWorkerError, SchemaError
from ..utils import WorkerUtils
from . import _api, _pages
from ._actions import Actions
from ._auth import DashboardAuth, NoAuth, Refusal, authenticate, check_auth
from ._core import USER_SCOPE_KEY, Core, route_path
from ._queries import DashboardQueries, JobCounters
from ._render import Renderer
from ._sampler import ThroughputSampler
from ._security import Csrf, HttpError, SecurityHeaders

logger = logging.getLogger("sqlalchemy_graphile.dashboard")

#: The ``application_name`` of the connections of an engine the dashboard creates.
APPLICATION_NAME = "sqlalchemy-graphile-dashboard"
_STATIC = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_QUERY_CANCELED = "57014"

Endpoint = Callable[[Core, Request], Awaitable[Response]]


class DashboardApp:
    """The job queue dashboard: an ASGI application to mount in Starlette or FastAPI, or to
    serve on its own (``sqlalchemy-graphile dashboard``). Build it with
    :func:`dashboard_app`.

    Mounted, it starts sampling throughput on its first request, and keeps its engine until
    :meth:`close` (call it from your application's lifespan if you want to release the
    connections before the process ends). Served on its own, its lifespan does both.
    """

    def __init__(self, core: Core, owns_engine: bool) -> None:
        self._core = core
        self._owns_engine = owns_engine
        routes = [
            *(Route(path, _bind(core, page)) for path, page in _PAGES),
            *(Route(path, _bind(core, call)) for path, call in _API),
            Route("/actions/{action}", _bind(core, _pages.act), methods=["POST"]),
            Route("/api/actions/{action}", _bind(core, _api.act), methods=["POST"]),
            Route("/static/{name}", _static),
        ]
        handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
            HttpError: functools.partial(_http_error, core),
            HTTPException: functools.partial(_starlette_error, core),
            GraphileWorkerError: functools.partial(_our_error, core),
            DBAPIError: functools.partial(_database_error, core),
            OSError: functools.partial(_connection_error, core),
        }
        starlette = Starlette(routes=routes, exception_handlers=handlers, lifespan=self._lifespan)
        self._app: ASGIApp = SecurityHeaders(_Guard(starlette, core))

    @property
    def schema(self) -> str:
        """The schema of the job queue shown."""
        return self._core.schema

    @property
    def engine(self) -> AsyncEngine:
        """The engine the dashboard reads and acts with."""
        return self._core.engine

    @property
    def read_only(self) -> bool:
        """Whether actions are hidden and refused."""
        return self._core.read_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    async def close(self) -> None:
        """Stop the throughput sampler and dispose of the engine if the dashboard made it
        from a URL (an engine you passed is yours to dispose)."""
        await self._core.sampler.stop()
        if self._owns_engine:
            await self._core.engine.dispose()

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._core.sampler.start()
        try:
            yield
        finally:
            await self.close()


def dashboard_app(
    database: str | URL | AsyncEngine | None = None,
    *,
    schema: str | None = None,
    auth: DashboardAuth | None = None,
    read_only: bool = False,
    crontab: str | Iterable[CronItem] | None = None,
    title: str = "Job queue",
    secret: bytes | None = None,
    sample_interval: float = 10.0,
    refresh_seconds: float = 5.0,
    statement_timeout: float = 10.0,
) -> DashboardApp:
    """Build the dashboard for the job queue in ``database``.

    ``database`` is a URL (``str`` or :class:`sqlalchemy.URL`; a plain ``postgresql://`` URL
    uses asyncpg), an :class:`~sqlalchemy.ext.asyncio.AsyncEngine`, or ``None`` for
    ``$DATABASE_URL``. The engine's role must be able to read the schema's tables (the role
    your workers use). ``schema`` defaults to ``$GRAPHILE_WORKER_SCHEMA`` or
    ``graphile_worker``.

    * ``auth``: :class:`NoAuth` (the default: requests from this machine only),
      :class:`BasicAuth`, :class:`BearerAuth` or :class:`TrustMountingApp`.
    * ``read_only``: hide every action and refuse every change.
    * ``crontab``: the crontab your workers run (text or :class:`CronItem` objects), so
      the cron page can show patterns and next runs; the database stores neither.
    * ``secret``: signs CSRF tokens; give the same bytes to every process serving the
      dashboard behind one address (default: random per process).
    * ``sample_interval``: seconds between throughput samples; ``refresh_seconds``: how
      often pages refresh themselves (with JavaScript on); ``statement_timeout``: seconds
      after which a read is cancelled.

    Raises :class:`ConfigurationError` or :class:`InvalidIdentifierError` for bad options,
    before connecting: nothing connects until the first request.
    """
    resolved_schema = resolve_schema(schema)
    chosen_auth = check_auth(NoAuth() if auth is None else auth)
    items = crontab_items(crontab)
    for name, value in (
        ("sample_interval", sample_interval),
        ("refresh_seconds", refresh_seconds),
        ("statement_timeout", statement_timeout),
    ):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigurationError(f"{name} must be a positive number of seconds, not {value!r}")
    if secret is not None and (not isinstance(secret, bytes) or len(secret) < 16):
        raise ConfigurationError("secret must be at least 16 random bytes")
    engine, owns_engine = _engine(database)
    queries = DashboardQueries(resolved_schema)
    utils = WorkerUtils(engine, schema=resolved_schema)

    # Both run later, once `core` exists.
    def reading() -> AbstractAsyncContextManager[AsyncConnection]:
        return core.reading()

    async def read_counters() -> JobCounters:
        async with core.reading() as connection:
            return await queries.job_counters(connection)

    core = Core(
        schema=resolved_schema,
        auth=chosen_auth,
        read_only=bool(read_only),
        title=title,
        crontab=items,
        refresh_seconds=refresh_seconds,
        statement_timeout_ms=max(1, round(statement_timeout * 1000)),
        engine=engine,
        queries=queries,
        actions=Actions(utils, queries, reading),
        sampler=ThroughputSampler(read_counters, sample_interval),
        renderer=Renderer(),
        csrf=Csrf(secret),
    )
    return DashboardApp(core, owns_engine)


def _engine(database: str | URL | AsyncEngine | None) -> tuple[AsyncEngine, bool]:
    if isinstance(database, AsyncEngine):
        return database, False
    if database is None:
        database = database_url_from_env()
    if not isinstance(database, str | URL):
        raise ConfigurationError(
            "database must be a URL or an AsyncEngine (create one with "
            f"sqlalchemy.ext.asyncio.create_async_engine), not {type(database).__name__}"
        )
    url = async_url(database)
    connect_args: dict[str, Any] = {}
    if url.get_driver_name() == "asyncpg":
        connect_args["server_settings"] = {"application_name": APPLICATION_NAME}
    engine = create_async_engine(url, pool_pre_ping=True, connect_args=connect_args)
    return engine, True


def _bind(core: Core, endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def call(request: Request) -> Response:
        return await endpoint(core, request)

    call.__name__ = endpoint.__name__
    return call


_PAGES: list[tuple[str, Endpoint]] = [
    ("/", _pages.overview),
    ("/jobs", _pages.jobs),
    ("/jobs/{job_id:int}", _pages.job),
    ("/queues", _pages.queues),
    ("/cron", _pages.cron),
    ("/workers", _pages.workers),
    ("/confirm", _pages.confirm),
]
_API: list[tuple[str, Endpoint]] = [
    ("/api/session", _api.session),
    ("/api/overview", _api.overview),
    ("/api/jobs", _api.jobs),
    ("/api/jobs/{job_id:int}", _api.job),
    ("/api/queues", _api.queues),
    ("/api/cron", _api.cron),
    ("/api/workers", _api.workers),
]


@functools.cache
def _asset(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


async def _static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in _STATIC:
        raise HttpError(404, "No such file.")
    return Response(_asset(name), media_type=_STATIC[name])


class _Guard:
    """Authenticates every HTTP request before the routes see it, and starts the sampler
    (an app that is mounted gets no lifespan events of its own)."""

    def __init__(self, app: ASGIApp, core: Core) -> None:
        self.app = app
        self.core = core

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        result = await authenticate(self.core.auth, request)
        if isinstance(result, Refusal):
            response = _refusal_response(self.core, request, result)
            await response(scope, receive, send)
            return
        scope[USER_SCOPE_KEY] = result
        self.core.sampler.start()
        await self.app(scope, receive, send)


def _wants_json(request: Request) -> bool:
    return route_path(request).startswith("/api/")


def _refusal_response(core: Core, request: Request, refusal: Refusal) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": refusal.message}, refusal.status, refusal.headers)
    # Not signed in: a bare page, without navigation or anything from the database.
    html = core.renderer.render("refused.html", {"title": core.title, "message": refusal.message})
    return Response(html, refusal.status, refusal.headers, media_type="text/html")


def _error(core: Core, request: Request, status: int, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": message}, status)
    return _pages.error_page(core, request, status, message)


async def _http_error(core: Core, request: Request, error: Exception) -> Response:
    assert isinstance(error, HttpError)
    response = _error(core, request, error.status, error.message)
    response.headers.update(error.headers)
    return response


async def _starlette_error(core: Core, request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    messages = {404: "There is no such page.", 405: "This page does not take that method."}
    response = _error(
        core, request, error.status_code, messages.get(error.status_code, error.detail)
    )
    if error.headers:
        response.headers.update(error.headers)
    return response


async def _our_error(core: Core, request: Request, error: Exception) -> Response:
    if isinstance(error, ValueError | TypeError):  # bad input, BadRequest included
        return _error(core, request, 400, str(error))
    if isinstance(error, SchemaError | DatabaseConnectionError):
        return _error(core, request, 503, str(error))
    logger.exception("dashboard request failed")
    return _error(core, request, 500, str(error))


async def _database_error(core: Core, request: Request, error: Exception) -> Response:
    assert isinstance(error, DBAPIError)
    missing = schema_not_installed(error, core.schema)
    if missing is not None:
        return _error(core, request, 503, str(missing))
    sqlstate = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    if sqlstate == _QUERY_CANCELED:
        seconds = core.statement_timeout_ms / 1000
        message = f"The query took longer than {seconds:g} s and was cancelled: narrow the filters."
        return _error(core, request, 503, message)
    if error.connection_invalidated or sqlstate is None or sqlstate.startswith("08"):
        return _error(core, request, 503, f"Cannot reach the database: {_one_line(error.orig)}")
    logger.error("dashboard query failed: %s", error)
    return _error(core, request, 500, f"Database error: {_one_line(error.orig)}")


async def _connection_error(core: Core, request: Request, error: Exception) -> Response:
    return _error(core, request, 503, f"Cannot reach the database: {_one_line(error)}")


def _one_line(error: object) -> str:
    return " ".join(str(error).split())
