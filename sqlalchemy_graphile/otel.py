"""OpenTelemetry tracing across adding and running jobs (the ``otel`` extra).

``pip install 'sqlalchemy-graphile[otel]'`` (it installs ``opentelemetry-api`` only; bring
the SDK and exporters you use). Nothing else in the package imports this module.

:class:`TracingPlugin` is a :class:`~sqlalchemy_graphile.WorkerPlugin`. Register it where
jobs are added and on the worker::

    tracing = TracingPlugin()
    JobHelpers(session, plugins=[tracing]).add_job(SendEmail(to=...))
    Worker(url, tasks=[SendEmail], plugins=[tracing])

* Adding a job while a span is active stores that span's context in the payload under
  ``_trace``, in the Rust port's shape: ``{"flags": 1, "trace_id": "<32 hex>", "span_id":
  "<16 hex>"}``; on the object payload, or on each object item of an array payload.
* Running a job starts a ``CONSUMER`` span, ``process <task identifier>``, whose parent is
  the stored context (so the run joins the trace that added it), or, for a batch job, that
  links every item's context. It is the current span while the task runs, so the task's
  own spans are its children, and the jobs the task adds carry it on. Attributes follow
  OpenTelemetry's messaging conventions; a failure is recorded on the span.

Tasks never see ``_trace``: the worker removes it before validating the payload into the
task's model, with or without this module.
"""

from __future__ import annotations

import json
from contextvars import Token
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.context import Context
except ImportError as error:  # pragma: no cover - exercised in a fresh interpreter
    raise ImportError(
        "sqlalchemy_graphile.otel needs the otel extra: pip install 'sqlalchemy-graphile[otel]'",
        name=error.name,
    ) from error

from . import __version__
from ._payload import TRACE_KEY
from .hooks import JobRun, JobRunOutcome, JobRunResult, JobToSchedule, WorkerPlugin

#: ``messaging.system`` of the spans (the Rust port's value).
MESSAGING_SYSTEM = "graphile-worker"


class TracingPlugin(WorkerPlugin):
    """Propagates the active trace through ``_trace`` when jobs are added, and traces each
    run with a ``CONSUMER`` span. ``tracer_provider`` defaults to the global one."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer(
            "sqlalchemy_graphile", __version__, tracer_provider=tracer_provider
        )
        self._runs: dict[JobRun, tuple[trace.Span, Token[Context]]] = {}
        # The last context stored, in its stored form: a bulk add stores one many times.
        self._last: tuple[trace.SpanContext | None, dict[str, Any]] = (None, {})

    # -- adding ------------------------------------------------------------------------

    def before_job_schedule(self, job: JobToSchedule) -> JobToSchedule:
        """Store the active span's context under ``_trace`` (replacing one already there);
        jobs added outside any span are left alone."""
        span_context = trace.get_current_span().get_span_context()
        if not span_context.is_valid:
            return job
        last, stored = self._last
        if span_context is not last:
            stored = trace_dict(span_context)
            self._last = (span_context, stored)
        payload = job.payload
        for item in payload if isinstance(payload, list) else [payload]:
            if isinstance(item, dict):
                item[TRACE_KEY] = dict(stored)
        return job

    # -- running -----------------------------------------------------------------------

    def before_job_run(self, run: JobRun) -> None:
        job = run.job
        parent, links, count = _stored_contexts(job.payload_json)
        attributes: dict[str, Any] = {
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": job.task_identifier,
            "messaging.message.id": str(job.id),
            "graphile_worker.job.attempt": job.attempts,
            "graphile_worker.job.max_attempts": job.max_attempts,
            "graphile_worker.job.priority": job.priority,
            "graphile_worker.worker_id": run.worker_id,
        }
        if job.queue_name is not None:
            attributes["graphile_worker.job.queue_name"] = job.queue_name
        if count is not None:
            attributes["messaging.batch.message_count"] = count
        span = self._tracer.start_span(
            f"process {job.task_identifier}",
            context=trace.set_span_in_context(parent) if parent is not None else None,
            kind=trace.SpanKind.CONSUMER,
            links=links,
            attributes=attributes,
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        self._runs[run] = (span, token)

    def after_job_run(self, run: JobRun, result: JobRunResult) -> None:
        entry = self._runs.pop(run, None)
        if entry is None:
            return
        span, token = entry
        try:
            if not result.succeeded:
                error = result.error
                if error is not None:
                    span.record_exception(error)
                    span.set_attribute("error.type", type(error).__qualname__)
                description = f"{type(error).__name__}: {error}" if error is not None else None
                if result.outcome is JobRunOutcome.INTERRUPTED:
                    description = "interrupted by a forceful shutdown"
                span.set_status(trace.Status(trace.StatusCode.ERROR, description))
            span.end()
        finally:
            otel_context.detach(token)


def trace_dict(span_context: trace.SpanContext) -> dict[str, Any]:
    """A span context in the Rust port's ``_trace`` shape."""
    return {
        "flags": int(span_context.trace_flags),
        "trace_id": trace.format_trace_id(span_context.trace_id),
        "span_id": trace.format_span_id(span_context.span_id),
    }


def span_context_of(stored: object) -> trace.SpanContext | None:
    """The remote span context a ``_trace`` value describes, or ``None`` if it is not one
    (wrong shape, ids that are not hex or are all zeros)."""
    if not isinstance(stored, dict):
        return None
    trace_id, span_id, flags = stored.get("trace_id"), stored.get("span_id"), stored.get("flags")
    if not (isinstance(trace_id, str) and isinstance(span_id, str)):
        return None
    if isinstance(flags, bool) or not isinstance(flags, int) or not 0 <= flags <= 255:
        flags = 0
    try:
        context = trace.SpanContext(
            trace_id=int(trace_id, 16),
            span_id=int(span_id, 16),
            is_remote=True,
            trace_flags=trace.TraceFlags(flags),
        )
    except ValueError:
        return None
    return context if context.is_valid else None


def _stored_contexts(
    payload_json: str,
) -> tuple[trace.NonRecordingSpan | None, list[trace.Link], int | None]:
    """The parent span of a job's run (for an object payload), the links (for an array
    payload: one per item that carries a context) and the item count of an array."""
    is_array = payload_json.lstrip().startswith("[")
    if not is_array and '"_trace"' not in payload_json:
        return None, [], None
    payload = json.loads(payload_json)
    if isinstance(payload, list):
        links = []
        for item in payload:
            context = span_context_of(item.get(TRACE_KEY)) if isinstance(item, dict) else None
            if context is not None:
                links.append(trace.Link(context))
        return None, links, len(payload)
    if isinstance(payload, dict):
        context = span_context_of(payload.get(TRACE_KEY))
        if context is not None:
            return trace.NonRecordingSpan(context), [], None
    return None, [], None


__all__ = ["MESSAGING_SYSTEM", "TracingPlugin", "span_context_of", "trace_dict"]
