"""The ``otel`` extra against a real database and real workers, with the SDK's in-memory
exporter: one trace from an HTTP-style span through the add to the task's own spans,
batch links, failures, payloads written by the Rust port, and a worker in another
process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar, Self

import psycopg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import ConfigDict
from sqlalchemy import create_engine, pool
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from sqlalchemy_graphile import (
    AsyncJobHelpers,
    BatchTask,
    JobHelpers,
    JobSpec,
    Task,
    Worker,
    WorkerContext,
    WorkerUtils,
)
from sqlalchemy_graphile.otel import TracingPlugin

from .._imports import ROOT
from ._worker_support import add

#: The ids of a trace context as the Rust port's own tests write it.
RUST_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
RUST_SPAN_ID = "00f067aa0ba902b7"
RUST_TRACE = {"flags": 1, "trace_id": RUST_TRACE_ID, "span_id": RUST_SPAN_ID}

SEEN: list[Any] = []


class SendEmail(Task):
    IDENTIFIER: ClassVar[str] = "send_email"
    # Neither "forbid" nor "allow" lets a model see `_trace`.
    model_config = ConfigDict(extra="allow")
    to: str

    async def run(self, ctx: WorkerContext) -> None:
        SEEN.append(self)
        with trace.get_tracer("app").start_as_current_span("render the email"):
            if self.to == "fail@example.com":
                raise ValueError("mailbox full")
            await ctx.add_raw_job("audit", {"sent_to": self.to})


class Strict(Task):
    IDENTIFIER: ClassVar[str] = "strict"
    model_config = ConfigDict(extra="forbid")
    n: int

    def run(self, ctx: WorkerContext) -> None:
        SEEN.append(self)
        with trace.get_tracer("app").start_as_current_span("sync work"):
            pass


class Digest(BatchTask):
    IDENTIFIER: ClassVar[str] = "digest"
    user: str

    @classmethod
    async def run_batch(cls, items: list[Self], ctx: WorkerContext) -> None:
        SEEN.extend(items)


#: Every span of this process, from the global provider (it can be set once per process,
#: as an application does at start-up).
MEMORY = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(MEMORY))


@pytest.fixture
def memory() -> InMemorySpanExporter:
    """The spans of this test: the global provider's, emptied first."""
    if trace.get_tracer_provider() is not _PROVIDER:
        trace.set_tracer_provider(_PROVIDER)
    MEMORY.clear()
    SEEN.clear()
    return MEMORY


def _web() -> trace.Tracer:
    return trace.get_tracer("web")


@pytest.fixture
async def async_session(db_url: str) -> AsyncIterator[AsyncSession]:
    engine = create_async_engine(
        db_url.replace("postgresql://", "postgresql+asyncpg://"), poolclass=pool.NullPool
    )
    async with AsyncSession(engine) as session:
        yield session
    await engine.dispose()


def _spans(memory: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in memory.get_finished_spans()}


def _stored_payloads(db: psycopg.Connection, identifier: str) -> list[Any]:
    return [
        payload
        for (payload,) in db.execute(
            "select j.payload from graphile_worker._private_jobs j join"
            " graphile_worker._private_tasks t on t.id = j.task_id"
            " where t.identifier = %s order by j.id",
            (identifier,),
        ).fetchall()
    ]


def _worker(db_url: str, tracing: TracingPlugin, *tasks: Any) -> Worker:
    return Worker(db_url, tasks=list(tasks), plugins=[tracing], handle_signals=False)


async def test_one_trace_from_the_request_to_the_tasks_own_spans(
    memory: InMemorySpanExporter,
    async_session: AsyncSession,
    db_url: str,
    db: psycopg.Connection,
) -> None:
    tracing = TracingPlugin()
    with _web().start_as_current_span("POST /signup", kind=trace.SpanKind.SERVER) as request:
        async with async_session.begin():
            job = await AsyncJobHelpers(async_session, plugins=[tracing]).add_job(
                SendEmail(to="ada@example.com"), JobSpec(queue_name="mail", priority=3)
            )
    request_context = request.get_span_context()
    (stored,) = _stored_payloads(db, "send_email")
    assert stored["_trace"] == {
        "flags": int(request_context.trace_flags),
        "trace_id": f"{request_context.trace_id:032x}",
        "span_id": f"{request_context.span_id:016x}",
    }

    await _worker(db_url, tracing, SendEmail).run_once()

    spans = _spans(memory)
    run, own = spans["process send_email"], spans["render the email"]
    assert {run.context.trace_id, own.context.trace_id} == {request_context.trace_id}
    assert run.parent is not None
    assert run.parent.span_id == request_context.span_id
    assert own.parent is not None
    assert own.parent.span_id == run.context.span_id
    assert run.kind is trace.SpanKind.CONSUMER
    assert dict(run.attributes or {}) == {
        "messaging.system": "graphile-worker",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "send_email",
        "messaging.message.id": str(job.id),
        "graphile_worker.job.attempt": 1,
        "graphile_worker.job.max_attempts": 25,
        "graphile_worker.job.priority": 3,
        "graphile_worker.job.queue_name": "mail",
        "graphile_worker.worker_id": run.attributes["graphile_worker.worker_id"],  # type: ignore[index]
    }
    assert run.status.is_ok
    # The task's model never sees the trace context, even with extra="allow".
    (model,) = SEEN
    assert model.model_extra == {}
    # A job the task adds carries the trace on, from the task's own span.
    (audit,) = _stored_payloads(db, "audit")
    assert audit["_trace"]["trace_id"] == f"{request_context.trace_id:032x}"
    assert audit["_trace"]["span_id"] == f"{own.context.span_id:016x}"


async def test_a_failure_is_recorded_on_the_span(
    memory: InMemorySpanExporter, db_url: str, db: psycopg.Connection
) -> None:
    tracing = TracingPlugin(tracer_provider=_PROVIDER)
    with _web().start_as_current_span("POST /notify"):
        async with WorkerUtils(db_url, plugins=[tracing]) as utils:
            await utils.add_job(SendEmail(to="fail@example.com"))
    await _worker(db_url, tracing, SendEmail).run_once()
    run = _spans(memory)["process send_email"]
    assert run.status.status_code is trace.StatusCode.ERROR
    assert run.status.description == "ValueError: mailbox full"
    assert (run.attributes or {})["error.type"] == "ValueError"
    (event,) = run.events
    assert event.name == "exception"
    assert (event.attributes or {})["exception.message"] == "mailbox full"


async def test_a_batch_jobs_span_links_the_contexts_of_its_items(
    memory: InMemorySpanExporter, db_url: str, db: psycopg.Connection
) -> None:
    tracing = TracingPlugin()
    spec = JobSpec(job_key="digest")
    contexts = []
    async with WorkerUtils(db_url, plugins=[tracing]) as utils:
        for user in ("ada", "grace"):
            with _web().start_as_current_span(f"POST /follow/{user}") as request:
                await utils.add_batch_job([Digest(user=user)], spec)
            contexts.append(request.get_span_context())
    assert [item["_trace"]["span_id"] for item in _stored_payloads(db, "digest")[0]] == [
        f"{context.span_id:016x}" for context in contexts
    ]
    await _worker(db_url, tracing, Digest).run_once()
    run = _spans(memory)["process digest"]
    assert [(link.context.trace_id, link.context.span_id) for link in run.links] == [
        (context.trace_id, context.span_id) for context in contexts
    ]
    assert run.parent is None
    assert (run.attributes or {})["messaging.batch.message_count"] == 2
    assert [item.user for item in SEEN] == ["ada", "grace"]
    assert all(item.model_extra in (None, {}) for item in SEEN)


async def test_a_payload_written_by_the_rust_port_validates_and_links(
    memory: InMemorySpanExporter, db_url: str, db: psycopg.Connection
) -> None:
    tracing = TracingPlugin()
    add(db, "strict", json.dumps({"n": 1, "_trace": RUST_TRACE}))
    add(db, "strict", json.dumps({"n": 2, "_trace": {"trace_id": "nothex", "span_id": 1}}))
    await _worker(db_url, tracing, Strict).run_once()
    assert sorted(model.n for model in SEEN) == [1, 2]
    assert _stored_payloads(db, "strict") == []  # both completed
    runs = [span for span in memory.get_finished_spans() if span.name == "process strict"]
    linked = [span for span in runs if span.parent is not None]
    (run,) = linked
    assert run.context.trace_id == int(RUST_TRACE_ID, 16)
    assert run.parent is not None
    assert run.parent.span_id == int(RUST_SPAN_ID, 16)
    assert run.parent.is_remote
    # The sync task's own span (run in a thread) is a child of the run's span.
    children = [s for s in memory.get_finished_spans() if s.name == "sync work"]
    assert {s.parent.span_id for s in children if s.parent} == {s.context.span_id for s in runs}


def test_jobs_added_outside_any_span_carry_no_trace(
    memory: InMemorySpanExporter, db_url: str, db: psycopg.Connection
) -> None:
    tracing = TracingPlugin()
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with Session(engine) as session, session.begin():
        JobHelpers(session, plugins=[tracing]).add_job(SendEmail(to="ada@example.com"))
    engine.dispose()
    assert _stored_payloads(db, "send_email") == [{"to": "ada@example.com"}]


_WORKER_PROCESS = '''
import asyncio, json, sys
from typing import ClassVar

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from sqlalchemy_graphile import Task, Worker, WorkerContext
from sqlalchemy_graphile.otel import TracingPlugin


class JsonLinesExporter(SpanExporter):
    """Writes each finished span as one line of JSON."""

    def __init__(self, path):
        self.file = open(path, "a", encoding="utf-8")

    def export(self, spans):
        for span in spans:
            record = {
                "name": span.name,
                "trace_id": span.context.trace_id,
                "span_id": span.context.span_id,
                "parent_id": span.parent.span_id if span.parent else None,
                "kind": span.kind.name,
                "attributes": dict(span.attributes),
            }
            self.file.write(json.dumps(record) + "\\n")
        self.file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self):
        self.file.close()


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(sys.argv[2])))
trace.set_tracer_provider(provider)


class SendEmail(Task):
    IDENTIFIER: ClassVar[str] = "send_email"
    to: str

    async def run(self, ctx: WorkerContext) -> None:
        with trace.get_tracer("app").start_as_current_span("render the email"):
            pass


async def main():
    await Worker(sys.argv[1], tasks=[SendEmail], plugins=[TracingPlugin()]).run_once()
    provider.shutdown()


asyncio.run(main())
'''


def test_one_trace_across_processes(
    memory: InMemorySpanExporter,
    db_url: str,
    db: psycopg.Connection,
    tmp_path: Path,
) -> None:
    tracing = TracingPlugin()
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with (
        _web().start_as_current_span("POST /signup", kind=trace.SpanKind.SERVER) as request,
        Session(engine) as session,
        session.begin(),
    ):
        job = JobHelpers(session, plugins=[tracing]).add_job(SendEmail(to="ada@example.com"))
    engine.dispose()
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(_WORKER_PROCESS), encoding="utf-8")
    spans_file = tmp_path / "spans.jsonl"
    done = subprocess.run(
        [sys.executable, str(script), db_url, str(spans_file)],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    spans = {
        record["name"]: record
        for record in map(json.loads, spans_file.read_text(encoding="utf-8").splitlines())
    }
    run, own = spans["process send_email"], spans["render the email"]
    request_context = request.get_span_context()
    assert run["trace_id"] == own["trace_id"] == request_context.trace_id
    assert run["parent_id"] == request_context.span_id
    assert own["parent_id"] == run["span_id"]
    assert run["kind"] == "CONSUMER"
    assert run["attributes"]["messaging.message.id"] == str(job.id)
    assert _stored_payloads(db, "send_email") == []
