"""docs/recipes.md: its code blocks are the modules of an application, ``shop``, imported
here and run recipe by recipe against PostgreSQL with a real worker."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from sqlalchemy_graphile import AsyncJobHelpers, JobSpec, Worker, WorkerUtils
from sqlalchemy_graphile.testing import assert_enqueued, assert_not_enqueued, enqueued_jobs

from .._doc_blocks import blocks, project_files
from .._user_projects import write_files

PAGE = Path(__file__).resolve().parents[2] / "docs" / "recipes.md"
MODULES = ("db", "receipts", "albums", "invoices", "geocoding", "priorities", "workers", "uploads")


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    """The page's modules, written out and imported as the package ``shop``."""
    root = tmp_path_factory.mktemp("recipes")
    write_files(root, project_files(PAGE))
    sys.path.insert(0, str(root))
    try:
        yield {name: importlib.import_module(f"shop.{name}") for name in MODULES}
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == "shop" or m.startswith("shop.")]:
            del sys.modules[name]


@dataclass
class App:
    """The application's tables in a fresh database, an engine and a session factory."""

    url: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    database: object  # the shop's Database extension, on `sessions`

    def worker(self, *tasks: Any, extensions: list[object], concurrency: int = 1) -> Worker:
        """A worker for ``tasks`` with the Database extension and ``extensions``."""
        return Worker(
            self.engine,
            tasks=tasks,
            extensions=[self.database, *extensions],
            concurrency=concurrency,
            handle_signals=False,
        )

    async def make_due(self, task: Any) -> None:
        """Reschedule the jobs of ``task`` to run now (the test cannot wait for them)."""
        async with self.sessions() as session:
            ids = sorted({entry.job.id for entry in await enqueued_jobs(session, task)})
        async with WorkerUtils(self.engine) as utils:
            await utils.reschedule_jobs(ids, run_at=datetime.now(UTC))


@pytest.fixture
async def app(shop: dict[str, ModuleType], db_url: str) -> AsyncIterator[App]:
    sync_engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    shop["db"].Base.metadata.create_all(sync_engine)
    sync_engine.dispose()
    engine = create_async_engine(db_url.replace("postgresql://", "postgresql+asyncpg://", 1))
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    yield App(db_url, engine, sessions, shop["db"].Database(sessions=sessions))
    await engine.dispose()


def test_every_code_block_is_a_module_of_the_application() -> None:
    paths = [block.path for block in blocks(PAGE)]
    assert None not in paths, "every block names its file in its first line"
    assert set(paths) == {f"shop/{name}.py" for name in MODULES}


async def test_idempotent_receipts(shop: dict[str, ModuleType], app: App) -> None:
    receipts = shop["receipts"]

    class RecordingMailer(receipts.Mailer):  # type: ignore[name-defined, misc]
        def __init__(self) -> None:
            self.sent: list[tuple[str, str]] = []

        async def send(self, to: str, subject: str, *, idempotency_key: str) -> None:
            self.sent.append((to, idempotency_key))

    async with app.sessions() as session, session.begin():
        session.add(receipts.Order(id=7, email="ada@example.com"))
    for _ in range(2):  # a double click: two requests, two transactions
        async with app.sessions() as session, session.begin():
            await receipts.send_receipt_later(session, 7)
    async with app.sessions() as session:
        await assert_enqueued(session, receipts.SendReceipt, count=1, order_id=7)

    mailer = RecordingMailer()
    await app.worker(receipts.SendReceipt, extensions=[mailer]).run_once()
    assert mailer.sent == [("ada@example.com", "receipt:7")]

    # After success the key is free: a late add makes a job, which finds the work done.
    async with app.sessions() as session, session.begin():
        await receipts.send_receipt_later(session, 7)
    await app.worker(receipts.SendReceipt, extensions=[mailer]).run_once()
    assert mailer.sent == [("ada@example.com", "receipt:7")]

    # Two runs of one receipt at once (no key): the row lock lets one of them send it.
    async with app.sessions() as session, session.begin():
        session.add(receipts.Order(id=8, email="bob@example.com"))
        helpers = AsyncJobHelpers(session)
        await helpers.add_jobs([(receipts.SendReceipt(order_id=8), None)] * 2)
    await app.worker(receipts.SendReceipt, extensions=[mailer], concurrency=2).run_once()
    assert mailer.sent == [("ada@example.com", "receipt:7"), ("bob@example.com", "receipt:8")]
    async with app.sessions() as session:
        await assert_not_enqueued(session)
        order = await session.get_one(receipts.Order, 8)
        assert order.receipt_sent_at is not None


async def test_fan_out_then_fan_in_through_one_batch_job(
    shop: dict[str, ModuleType], app: App
) -> None:
    albums = shop["albums"]
    tasks = (albums.PublishAlbum, albums.MakeThumbnail, albums.ThumbnailMade)
    async with app.sessions() as session, session.begin():
        session.add(albums.Album(id=1))
        session.add_all([albums.Photo(id=n, album_id=1) for n in range(1, 5)])
        await AsyncJobHelpers(session).add_job(albums.PublishAlbum(album_id=1))

    await app.worker(*tasks, extensions=[], concurrency=4).run_once()  # fan out, then the work
    async with app.sessions() as session:
        reports = await assert_enqueued(session, albums.ThumbnailMade, count=4, album_id=1)
        assert len({report.job.id for report in reports}) == 1, "one batch job gathers them"
        assert reports[0].job.run_at > datetime.now(UTC), "it waits for the window to end"
        album = await session.get_one(albums.Album, 1)
        assert album.published_at is None

    await app.make_due(albums.ThumbnailMade)
    await app.worker(*tasks, extensions=[]).run_once()  # fan in
    async with app.sessions() as session:
        album = await session.get_one(albums.Album, 1)
        assert album.published_at is not None
        await assert_not_enqueued(session)


async def test_the_outbox_commits_the_invoice_and_its_message_and_delivers_them_in_order(
    shop: dict[str, ModuleType], app: App
) -> None:
    invoices = shop["invoices"]

    class RecordingAccounting(invoices.Accounting):  # type: ignore[name-defined, misc]
        def __init__(self) -> None:
            self.recorded: list[tuple[int, int]] = []

        async def record_invoice(self, invoice_id: int, total_cents: int) -> None:
            self.recorded.append((invoice_id, total_cents))

    issued = []
    for total in (1200, 300, 4500):
        async with app.sessions() as session:
            issued.append((await invoices.issue_invoice(session, "ACME", total)).id)
    async with app.sessions() as session:
        messages = await assert_enqueued(
            session, invoices.InvoiceIssued, count=3, spec=JobSpec(queue_name="accounting")
        )
        assert [message.payload.invoice_id for message in messages] == issued

    accounting = RecordingAccounting()
    await app.worker(invoices.InvoiceIssued, extensions=[accounting], concurrency=3).run_once()
    assert accounting.recorded == list(zip(issued, (1200, 300, 4500), strict=True))


async def test_a_named_queue_keeps_calls_to_the_service_one_at_a_time(
    shop: dict[str, ModuleType], app: App
) -> None:
    geocoding = shop["geocoding"]

    class CountingGeocoder(geocoding.Geocoder):  # type: ignore[name-defined, misc]
        min_interval = 0.0

        def __init__(self) -> None:
            self.in_flight = 0
            self.most_in_flight = 0
            self.overlap = asyncio.Event()

        async def locate(self, text: str) -> tuple[float, float]:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            if self.in_flight > 1:
                self.overlap.set()
            # Give the other three slots time to call in too; only the queue stops them.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.overlap.wait(), timeout=0.2)
            self.in_flight -= 1
            return (1.0, 2.0)

    async with app.sessions() as session, session.begin():
        session.add_all([geocoding.Address(id=n, text=f"street {n}") for n in range(1, 7)])
        await session.flush()
        for n in range(1, 7):
            await geocoding.geocode_later(session, n)
    async with app.sessions() as session:
        spec = JobSpec(queue_name="geocoder")
        await assert_enqueued(session, geocoding.Geocode, count=6, spec=spec)

    geocoder = CountingGeocoder()
    await app.worker(geocoding.Geocode, extensions=[geocoder], concurrency=4).run_once()
    assert geocoder.most_in_flight == 1
    async with app.sessions() as session:
        located = select(func.count()).where(geocoding.Address.latitude == 1.0)
        assert await session.scalar(located) == 6


async def test_interactive_work_goes_first_and_has_a_worker_of_its_own(
    shop: dict[str, ModuleType], app: App
) -> None:
    priorities, workers = shop["priorities"], shop["workers"]
    async with app.sessions() as session, session.begin():
        await priorities.reindex_everything(session, list(range(1, 11)))
    async with app.sessions() as session, session.begin():
        await priorities.request_password_reset(session, "ada@example.com")

    journal = priorities.Journal()
    serial = app.worker(
        priorities.SendPasswordReset, priorities.ReindexProduct, extensions=[journal]
    )
    await serial.run_once()
    assert journal.entries[0] == "reset ada@example.com", "added last, run first"
    assert len(journal.entries) == 11

    journal.entries.clear()
    async with app.sessions() as session, session.begin():
        await priorities.reindex_everything(session, [1, 2])
        await priorities.request_password_reset(session, "bob@example.com")
    await workers.interactive_worker(app.url, journal).run_once()
    assert journal.entries == ["reset bob@example.com"]
    async with app.sessions() as session:
        await assert_enqueued(session, priorities.ReindexProduct, count=2, spec=priorities.BULK)
    await workers.general_worker(app.url, journal).run_once()
    assert sorted(journal.entries) == ["reindex 1", "reindex 2", "reset bob@example.com"]


async def test_an_upload_enqueues_one_delayed_resize_per_image(
    shop: dict[str, ModuleType], app: App
) -> None:
    uploads = shop["uploads"]
    for _ in range(2):
        async with app.sessions() as session, session.begin():
            await uploads.image_uploaded(session, 42)
    async with app.sessions() as session:
        spec = JobSpec(job_key="resize_image:42", max_attempts=5, priority=5)
        [resize] = await assert_enqueued(session, uploads.ResizeImage, spec=spec, image_id=42)
        assert resize.job.run_at > datetime.now(UTC)
        assert resize.payload.width == 800

    await app.make_due(uploads.ResizeImage)
    await app.worker(uploads.ResizeImage, extensions=[]).run_once()
    async with app.sessions() as session:
        await assert_not_enqueued(session)
