"""Fixtures shared by the integration tests of the add helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ._enqueue_drivers import DRIVERS, Driver


@pytest.fixture(params=DRIVERS)
async def driver(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[Driver]:
    """The add helpers on each driver in turn: asyncpg, psycopg 3 async and sync, psycopg2."""
    made = Driver(request.param, db_url)
    yield made
    await made.dispose()
