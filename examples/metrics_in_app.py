"""Serve the worker's and the queue's Prometheus metrics from your own application.

Instead of ``Worker(metrics_port=...)``, the application owns the ``/metrics`` route: here a
plain WSGI app (the same works with Flask, Django or ``prometheus_client.make_asgi_app``)
serves one registry holding the process's metrics, the worker's (:class:`WorkerMetrics`) and
the queue's (:class:`QueueCollector`, one query per scrape on a small synchronous engine).
Run it with the database in ``$DATABASE_URL`` (the schema installed) and a port (0: any)::

    DATABASE_URL=postgresql://postgres@127.0.0.1/postgres python examples/metrics_in_app.py 8000

then add work and scrape::

    sqlalchemy-graphile add report --payload '{"name": "daily"}'
    curl -s http://127.0.0.1:8000/metrics | grep graphile_worker_jobs_completed

SIGINT (Ctrl-C) or SIGTERM stops it gracefully.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, ClassVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from sqlalchemy_graphile import Task, Worker, WorkerContext
from sqlalchemy_graphile.prometheus import QueueCollector, WorkerMetrics, process_registry

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class Report(Task):
    IDENTIFIER: ClassVar[str] = "report"
    name: str

    async def run(self, ctx: WorkerContext) -> None:
        ctx.logger.info("report %s done", self.name)


def metrics_registry(engine: Engine) -> CollectorRegistry:
    """The process's metrics plus the queue's, read through ``engine`` at each scrape."""
    registry = process_registry()
    registry.register(QueueCollector(engine))
    return registry


def application(registry: CollectorRegistry) -> WSGIApp:
    """The application: its own routes, and ``/metrics`` from ``registry``."""
    metrics: WSGIApp = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/metrics":
            return metrics(environ, start_response)
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"the application\n"]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


async def main(url: str, port: int) -> None:
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"), pool_size=1)
    registry = metrics_registry(engine)
    worker = Worker(url, tasks=[Report], metrics=WorkerMetrics(registry=registry))
    server: WSGIServer = make_server(
        "127.0.0.1", port, application(registry), handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    print(f"serving on http://127.0.0.1:{server.server_port}/metrics", flush=True)
    try:
        await worker.run()
    finally:
        server.shutdown()
        server.server_close()
        engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(os.environ["DATABASE_URL"], int(sys.argv[1]) if len(sys.argv) > 1 else 0))
