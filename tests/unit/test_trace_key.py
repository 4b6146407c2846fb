"""The ``_trace`` key: removed from what task models validate, and read back as a span
context by the ``otel`` extra."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from sqlalchemy_graphile._payload import without_trace
from sqlalchemy_graphile.otel import span_context_of, trace_dict

TRACE = '{"flags":1,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}'


@pytest.mark.parametrize(
    ("stored", "validated"),
    [
        ('{"a":1}', '{"a":1}'),
        (f'{{"a":1,"_trace":{TRACE}}}', '{"a":1}'),
        (f'[{{"a":1,"_trace":{TRACE}}},2,{{"_trace":{TRACE}}}]', '[{"a":1},2,{}]'),
        ('{"note":"_trace"}', '{"note":"_trace"}'),
        (f'{{"inner":{{"_trace":{TRACE}}}}}', f'{{"inner":{{"_trace":{TRACE}}}}}'),
        (f'{{"é":"ü","_trace":{TRACE}}}', '{"é":"ü"}'),
    ],
)
def test_without_trace(stored: str, validated: str) -> None:
    assert without_trace(stored) == validated


def test_text_without_the_key_is_returned_as_is() -> None:
    text = '{"a": [1, 2]}'
    assert without_trace(text) is text


def test_stored_contexts_round_trip() -> None:
    context = trace.SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=False,
        trace_flags=trace.TraceFlags(1),
    )
    stored = trace_dict(context)
    assert stored == {
        "flags": 1,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
    }
    read = span_context_of(stored)
    assert read is not None
    assert (read.trace_id, read.span_id, read.trace_flags, read.is_remote) == (
        context.trace_id,
        context.span_id,
        1,
        True,
    )


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "4bf92f35",
        {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"},
        {"trace_id": "zz", "span_id": "00f067aa0ba902b7", "flags": 1},
        {"trace_id": "0" * 32, "span_id": "00f067aa0ba902b7", "flags": 1},
        {"trace_id": 1, "span_id": 2, "flags": 1},
    ],
)
def test_what_is_not_a_span_context(stored: object) -> None:
    assert span_context_of(stored) is None


def test_bad_flags_read_as_not_sampled() -> None:
    stored = {"trace_id": "1" * 32, "span_id": "2" * 16, "flags": "sampled"}
    read = span_context_of(stored)
    assert read is not None
    assert read.trace_flags == 0
