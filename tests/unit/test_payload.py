"""Payload encoding: the checks that run before a payload is sent to PostgreSQL."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import pytest

from sqlalchemy_graphile import InvalidPayloadError, PayloadNotSerializableError
from sqlalchemy_graphile._payload import MAX_PAYLOAD_BYTES, check_payload_text, encode_payload


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({}, "{}"),
        ({"a": 1, "b": [True, None, 1.5]}, '{"a":1,"b":[true,null,1.5]}'),
        ([1, "two"], '[1,"two"]'),
        ("plain", '"plain"'),
        (None, "null"),
        ({"é": "😀"}, '{"é":"😀"}'),  # UTF-8, not \\u escapes
        ({"k": "\\u0000"}, '{"k":"\\\\u0000"}'),  # a literal backslash-u0000 is fine
        ({"k": "\u2028"}, '{"k":"\u2028"}'),
    ],
)
def test_encodes_compact_utf8_json(value: Any, text: str) -> None:
    assert encode_payload(value) == text
    assert json.loads(text) == value


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, {"a": [math.nan]}])
def test_refuses_nan_and_infinity(value: Any) -> None:
    with pytest.raises(InvalidPayloadError, match="not valid JSON"):
        encode_payload(value)


@pytest.mark.parametrize("value", ["a\x00b", {"a\x00": 1}, ["\x00"]])
def test_refuses_nul_characters(value: Any) -> None:
    with pytest.raises(InvalidPayloadError, match="NUL"):
        encode_payload(value)


@pytest.mark.parametrize("value", ["\ud800", {"\udfff": 1}, ["ok", "x\udc00y"]])
def test_refuses_lone_surrogates(value: Any) -> None:
    with pytest.raises(InvalidPayloadError, match="surrogate"):
        encode_payload(value)


@pytest.mark.parametrize("value", [{1, 2}, object(), b"bytes", Decimal("1.5"), {"k": {1}}])
def test_refuses_values_without_a_json_form(value: Any) -> None:
    with pytest.raises(PayloadNotSerializableError, match="not JSON-serialisable") as caught:
        encode_payload(value)
    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, InvalidPayloadError)


def test_refuses_nesting_too_deep_to_encode() -> None:
    deep: list[Any] = []
    cursor = deep
    for _ in range(100_000):
        cursor.append([])
        cursor = cursor[0]
    with pytest.raises(InvalidPayloadError, match="too deeply"):
        encode_payload(deep)


def test_size_limit_counts_utf8_bytes() -> None:
    fits = "x" * (MAX_PAYLOAD_BYTES - 2)  # plus two quotes
    assert len(encode_payload(fits)) == MAX_PAYLOAD_BYTES
    with pytest.raises(InvalidPayloadError, match="more than the limit"):
        encode_payload(fits + "x")
    multibyte = "é" * (MAX_PAYLOAD_BYTES // 2)  # two bytes each
    with pytest.raises(InvalidPayloadError, match="more than the limit"):
        encode_payload(multibyte)


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ('{"a":"\\u0000"}', True),
        ('{"a":"\\\\\\u0000"}', True),  # an escaped backslash, then a NUL escape
        ('{"a":"\\\\u0000"}', False),  # an escaped backslash, then plain text
        ('{"a":"\\u00001"}', True),
        ('{"a":"\\u0001"}', False),
    ],
)
def test_check_payload_text_finds_nul_escapes(text: str, refused: bool) -> None:
    if refused:
        with pytest.raises(InvalidPayloadError, match="NUL"):
            check_payload_text(text)
    else:
        assert check_payload_text(text) == text
