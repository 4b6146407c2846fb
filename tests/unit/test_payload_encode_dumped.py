"""The fast encoder for model dumps gives the standard encoder's results and errors."""

from __future__ import annotations

from typing import Any

import pytest

from sqlalchemy_graphile._payload import encode_dumped, encode_payload
from sqlalchemy_graphile.errors import InvalidPayloadError


@pytest.mark.parametrize(
    "value",
    [
        {"id": 1},
        {"text": 'héllo \n\t"\\ \u2028 \x01 </', "list": [1, 2.5, None, True], "nested": {}},
        {"word": "NaN and Infinity are words here"},
        [{"a": 1}, {"a": 2}],
        {"big": 2**70, "float": 1e300},
    ],
)
def test_same_text_as_the_standard_encoder(value: Any) -> None:
    assert encode_dumped(value) == encode_payload(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"x": float("nan")}, "not valid JSON"),
        ({"x": [float("inf")]}, "not valid JSON"),
        ({"x": "\ud800"}, "surrogate"),
        ({"x": "a\x00b"}, "NUL"),
    ],
)
def test_same_errors_as_the_standard_encoder(value: Any, message: str) -> None:
    with pytest.raises(InvalidPayloadError, match=message):
        encode_payload(value)
    with pytest.raises(InvalidPayloadError, match=message):
        encode_dumped(value)
