"""The plugins a Python child process runs with under ``--plugins``, to measure their cost.

* ``hooks``: one plugin overriding every job hook with one that does nothing, so what is
  measured is the hook machinery itself (the payload parsed and encoded again for
  ``before_job_schedule``, two awaited calls per run).
* ``tracing``: :class:`~sqlalchemy_graphile.otel.TracingPlugin` on an SDK tracer provider
  with a ``BatchSpanProcessor``, as in production, whose exporter drops the spans (no
  collector to wait for). Jobs are added inside a span, so each carries ``_trace`` and each
  run's span has a parent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from sqlalchemy_graphile import JobRun, JobRunResult, JobToSchedule, WorkerPlugin

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

#: The values of ``--plugins``.
PLUGIN_SETS = ("hooks", "tracing")


class NoopHooks(WorkerPlugin):
    """Every job hook, doing nothing."""

    def before_job_schedule(self, job: JobToSchedule) -> JobToSchedule:
        return job

    async def before_job_run(self, run: JobRun) -> None:
        return None

    async def after_job_run(self, run: JobRun, result: JobRunResult) -> None:
        return None


class ChildPlugins:
    """What one child registers: the ``plugins`` option, a context to add jobs in, and a
    :meth:`close` that flushes what the plugins buffered."""

    def __init__(self, name: str | None) -> None:
        self.plugins: Sequence[WorkerPlugin] = ()
        self._provider: TracerProvider | None = None
        self.adding: Callable[[], AbstractContextManager[Any]] = nullcontext
        if name == "hooks":
            self.plugins = (NoopHooks(),)
        elif name == "tracing":
            self._provider = _tracing_provider()
            from sqlalchemy_graphile.otel import TracingPlugin

            self.plugins = (TracingPlugin(tracer_provider=self._provider),)
            tracer = self._provider.get_tracer("benchmark")

            @contextmanager
            def in_a_span() -> Iterator[None]:
                with tracer.start_as_current_span("enqueue"):
                    yield

            self.adding = in_a_span
        elif name is not None:
            raise ValueError(f"unknown plugin set {name!r}; expected one of {PLUGIN_SETS}")

    def close(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()


def _tracing_provider() -> TracerProvider:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Dropping(SpanExporter):
        """Accepts every batch and keeps nothing."""

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropping()))
    return provider
