"""What a typed task stores, and how stored payloads validate into older and newer models
("versioning payloads")."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, ClassVar
from uuid import UUID

import psycopg
import pytest
from pydantic import BaseModel, ConfigDict, Field

from sqlalchemy_graphile import JobSpec, PayloadNotSerializableError, Task
from sqlalchemy_graphile.context import WorkerContext

from ._enqueue_drivers import Driver

pytestmark = pytest.mark.schema_flavours


@pytest.fixture
async def driver(db_url: str) -> AsyncIterator[Driver]:
    made = Driver("asyncpg", db_url)
    yield made
    await made.dispose()


def stored_payload(db: psycopg.Connection, job_id: int) -> str:
    row = db.execute(
        "select payload::text from graphile_worker._private_jobs where id = %s", [job_id]
    ).fetchone()
    assert row is not None
    return str(row[0])


# Two versions of one task, as two deployments of an application would define it.


class InvoiceV1(Task):
    IDENTIFIER: ClassVar[str] = "send_invoice"
    invoice_id: int

    async def run(self, ctx: WorkerContext) -> None:
        return None


class InvoiceV2(Task):
    IDENTIFIER: ClassVar[str] = "send_invoice"
    invoice_id: int
    copy_to: list[str] = Field(default_factory=list)  # new field, with a default
    language: str = "en"

    async def run(self, ctx: WorkerContext) -> None:
        return None


async def test_newer_payload_validates_into_an_older_model(
    driver: Driver, db: psycopg.Connection
) -> None:
    async with driver.transaction() as tx:
        job = await tx.add_job(InvoiceV2(invoice_id=7, copy_to=["boss@example.com"], language="fr"))
        await tx.commit()
    text = stored_payload(db, job.id)
    assert json.loads(text) == {"invoice_id": 7, "copy_to": ["boss@example.com"], "language": "fr"}
    old = InvoiceV1.model_validate_json(text)  # unknown keys are ignored
    assert old == InvoiceV1(invoice_id=7)


async def test_older_payload_validates_into_a_newer_model_with_defaults(
    driver: Driver, db: psycopg.Connection
) -> None:
    async with driver.transaction() as tx:
        job = await tx.add_job(InvoiceV1(invoice_id=8))
        await tx.commit()
    new = InvoiceV2.model_validate_json(stored_payload(db, job.id))
    assert (new.invoice_id, new.copy_to, new.language) == (8, [], "en")


# What is stored: pydantic's JSON mode, compact, by alias.


class Colour(Enum):
    RED = "red"


class Address(BaseModel):
    city: str


class Rich(Task):
    IDENTIFIER: ClassVar[str] = "rich"
    model_config = ConfigDict(populate_by_name=True)

    when: datetime
    day: date
    amount: Decimal
    ident: UUID
    colour: Colour
    address: Address
    tags: set[str]
    user_name: str = Field(alias="userName")

    async def run(self, ctx: WorkerContext) -> None:
        return None


async def test_typed_payload_is_pydantic_json_mode_by_alias(
    driver: Driver, db: psycopg.Connection
) -> None:
    task = Rich(
        when=datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC),
        day=date(2024, 2, 3),
        amount=Decimal("12.50"),
        ident=UUID("12345678-1234-5678-1234-567812345678"),
        colour=Colour.RED,
        address=Address(city="Zürich"),
        tags={"a"},
        user_name="ada",
    )
    async with driver.transaction() as tx:
        job = await tx.add_job(task, JobSpec(queue_name="rich"))
        await tx.commit()
    text = stored_payload(db, job.id)
    assert text == job.payload_json
    assert json.loads(text) == {
        "when": "2024-02-03T04:05:06Z",
        "day": "2024-02-03",
        "amount": "12.50",
        "ident": "12345678-1234-5678-1234-567812345678",
        "colour": "red",
        "address": {"city": "Zürich"},
        "tags": ["a"],
        "userName": "ada",
    }
    assert '"Zürich"' in text  # stored as UTF-8, not \\u escapes
    assert Rich.model_validate_json(text) == task  # the worker gets the same task back


class Opaque(Task):
    IDENTIFIER: ClassVar[str] = "opaque"
    model_config = ConfigDict(arbitrary_types_allowed=True)
    thing: Any

    async def run(self, ctx: WorkerContext) -> None:
        return None


async def test_typed_payload_without_json_form_is_refused_before_sql(driver: Driver) -> None:
    async with driver.transaction() as tx:
        before = len(driver.statements)
        with pytest.raises(PayloadNotSerializableError, match="Opaque"):
            await tx.add_job(Opaque(thing=object()))
        assert len(driver.statements) == before
