"""The plugin sets the benchmark's children run with under ``--plugins``."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from benchmarks._plugins import ChildPlugins, NoopHooks
from benchmarks._python import PythonSide
from sqlalchemy_graphile.otel import TracingPlugin


def test_no_set_means_no_plugins() -> None:
    plugins = ChildPlugins(None)
    assert plugins.plugins == ()
    with plugins.adding():
        assert not trace.get_current_span().get_span_context().is_valid
    plugins.close()


def test_hooks_override_every_job_hook() -> None:
    (plugin,) = ChildPlugins("hooks").plugins
    assert isinstance(plugin, NoopHooks)
    for hook in ("before_job_schedule", "before_job_run", "after_job_run"):
        assert hook in vars(NoopHooks)


def test_tracing_adds_jobs_inside_a_recording_span() -> None:
    plugins = ChildPlugins("tracing")
    (plugin,) = plugins.plugins
    assert isinstance(plugin, TracingPlugin)
    with plugins.adding():
        span = trace.get_current_span()
        assert span.get_span_context().is_valid
        assert span.is_recording()
    plugins.close()


def test_an_unknown_set_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown plugin set"):
        ChildPlugins("metrics")


def test_each_set_is_a_side_of_its_own() -> None:
    side = PythonSide("asyncio", plugins="tracing")
    assert side.name == "ours+tracing"
    command = side.enqueue_command("postgresql://h/d", 3)
    assert command[-5:] == ["--plugins", "tracing", "enqueue", "postgresql://h/d", "3"]
    assert PythonSide("asyncio").name == "ours"
