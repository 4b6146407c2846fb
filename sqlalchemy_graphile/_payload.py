"""Encoding payloads to the JSON text we store, with the checks PostgreSQL would fail late."""

from __future__ import annotations

import json
import re
from typing import Any

import pydantic_core

from .errors import InvalidPayloadError, PayloadNotSerializableError

#: The largest payload we accept, in bytes of UTF-8 JSON text.
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024

# A JSON "\u0000" escape: an odd number of backslashes followed by u0000.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

# Built once: json.dumps with options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def encode_payload(value: Any) -> str:
    """Encode a JSON-compatible value (dicts, lists, str, int, float, bool, None) to text.

    Raises :class:`PayloadNotSerializableError` for values with no JSON form and
    :class:`InvalidPayloadError` for NaN / Infinity, NUL characters, lone surrogates, nesting
    too deep to encode, or text over :data:`MAX_PAYLOAD_BYTES`.
    """
    try:
        text = _ENCODER.encode(value)
    except TypeError as error:
        raise PayloadNotSerializableError(f"payload is not JSON-serialisable: {error}") from error
    except ValueError as error:
        raise InvalidPayloadError(f"payload is not valid JSON: {error}") from error
    except RecursionError as error:
        raise InvalidPayloadError("payload is nested too deeply to encode") from error
    return check_payload_text(text)


def encode_dumped(value: Any) -> str:
    """:func:`encode_payload` for what ``model_dump(mode="json")`` returned (only JSON
    types), the same checks and errors, several times faster: pydantic's own encoder writes
    the text, and anything unusual (a NaN or infinity, a value it cannot encode) goes the
    standard way, which raises the right error. Floats may be written in a shorter form
    (``1e-7`` rather than ``1e-07``); the value is the same."""
    try:
        text = pydantic_core.to_json(value, inf_nan_mode="constants").decode()
    except Exception:
        return encode_payload(value)
    if "NaN" in text or "Infinity" in text:  # maybe a float; maybe just in a string
        return encode_payload(value)
    return check_payload_text(text)


def check_payload_text(text: str) -> str:
    """Check JSON text that is about to be stored; return it unchanged."""
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise InvalidPayloadError(
            "payload contains a NUL character (\\u0000), which PostgreSQL refuses"
        )
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise InvalidPayloadError(
            "payload contains a lone surrogate character that is not valid UTF-8"
        ) from error
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidPayloadError(
            f"payload is {size} bytes, more than the limit of {MAX_PAYLOAD_BYTES} bytes"
        )
    return text


#: The key under which the Rust port (and the ``otel`` extra) store a job's trace context.
TRACE_KEY = "_trace"


def without_trace(text: str) -> str:
    """The JSON text ``text`` without the ``_trace`` key of the object it holds (or of each
    object item, for an array): what a task model validates, so that no model sees the
    trace context, whatever its ``extra`` setting. ``text`` is returned unchanged (and not
    parsed) when it holds no ``"_trace"``."""
    if '"_trace"' not in text:
        return text
    value = pydantic_core.from_json(text)
    items = value if isinstance(value, list) else [value]
    found = False
    for item in items:
        if isinstance(item, dict) and TRACE_KEY in item:
            del item[TRACE_KEY]
            found = True
    if not found:
        return text
    return _ENCODER.encode(value)
