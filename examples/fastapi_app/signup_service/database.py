"""The engine, the session per request, and what the service needs in its database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from sqlalchemy_graphile import WorkerUtils

from .models import Base


async def prepare(engine: AsyncEngine) -> None:
    """Create the service's table and install the job queue schema (both are kept if they
    exist). A real service runs its migrations instead, with the job queue's revisions in
    its Alembic history."""
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    await WorkerUtils(engine).migrate()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for one request; its endpoint commits."""
    async with request.app.state.sessions() as session:
        yield session


SessionDependency = Annotated[AsyncSession, Depends(get_session)]
