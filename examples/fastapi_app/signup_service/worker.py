"""The worker as a process of its own: ``python -m signup_service.worker``, with the web
app started with ``WORKER_IN_APP=0``. It runs the same tasks with the same extension,
until SIGINT or SIGTERM, then shuts down gracefully."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from sqlalchemy_graphile import Worker

from .settings import Settings
from .tasks import Mailer, Services, jobs


async def main() -> None:
    settings = Settings.from_environment()
    engine = create_async_engine(settings.database_url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    worker = Worker(
        engine,
        tasks=jobs(),
        concurrency=4,
        extensions=[Services(sessions=sessions, mailer=Mailer())],
    )
    try:
        await worker.run()
    finally:
        await engine.dispose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(main())
