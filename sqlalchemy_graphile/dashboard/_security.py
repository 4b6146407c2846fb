"""Protections every response and every change gets: hardening headers, cross-site request
forgery tokens, and bounded reading of request bodies.

CSRF tokens are "signed double submit": a random nonce lives in an HttpOnly cookie, and each
form (or the ``X-CSRF-Token`` header of an API call) carries an HMAC of that nonce under the
dashboard's secret. A page on another site can neither read the token nor forge it, even if
it manages to plant a cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._filters import BadRequest

#: Where forms carry the CSRF token, and the header API calls carry it in.
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
CSRF_COOKIE = "sg_dashboard_csrf"
#: The largest request body read (forms and JSON), in bytes.
MAX_BODY_BYTES = 256 * 1024

#: Scripts, styles and images only from the dashboard itself; no inline code, no framing,
#: forms may only post back to it.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
_HEADER_NAMES = frozenset(name for name, _ in _HEADERS)


class HttpError(Exception):
    """Stop handling a request and answer with ``status`` and ``message``."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class SecurityHeaders:
    """ASGI middleware: puts the hardening headers on every HTTP response (replacing any
    the app set), errors and static files included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() not in _HEADER_NAMES
                ]
                message = {**message, "headers": [*kept, *_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_hardened)


class Csrf:
    """Issues and checks CSRF tokens with one secret (random per process unless given)."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else secrets.token_bytes(32)

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._secret, nonce.encode(), hashlib.sha256).hexdigest()

    def token(self, request: Request) -> tuple[str, str | None]:
        """The token for forms of this request, and a new nonce to set as the cookie when
        the request had none."""
        nonce = request.cookies.get(CSRF_COOKIE, "")
        if len(nonce) == 43 and nonce.isascii():
            return self._sign(nonce), None
        nonce = secrets.token_urlsafe(32)
        return self._sign(nonce), nonce

    def verify(self, request: Request, given: str | None) -> None:
        """Raise :class:`HttpError` (403) unless ``given`` is the token of the request's
        cookie, or the browser says the request comes from another site."""
        if request.headers.get("sec-fetch-site") == "cross-site":
            raise HttpError(403, "Refused: the request comes from another site.")
        nonce = request.cookies.get(CSRF_COOKIE)
        if not nonce or not given or not hmac.compare_digest(self._sign(nonce), given):
            raise HttpError(
                403,
                "Refused: the form's security token is missing or out of date. Reload the "
                "page and try again (API clients: send the X-CSRF-Token header that "
                "GET /api/session returns, with its cookie).",
            )


def set_csrf_cookie(response: Response, request: Request, nonce: str | None) -> None:
    """Set the CSRF cookie on ``response`` if :meth:`Csrf.token` made a new nonce."""
    if nonce is None:
        return
    response.set_cookie(
        CSRF_COOKIE,
        nonce,
        path=request.scope.get("root_path") or "/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


async def read_body(request: Request, content_type: str) -> bytes:
    """The request body, which must be of ``content_type`` and at most
    :data:`MAX_BODY_BYTES`; :class:`BadRequest` otherwise (before reading it all)."""
    given = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if given != content_type:
        raise BadRequest(f"the request body must be {content_type}, not {given or 'missing'}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise BadRequest(f"the request body is larger than {MAX_BODY_BYTES} bytes")
    return bytes(body)


async def read_form(request: Request) -> dict[str, list[str]]:
    """An ``application/x-www-form-urlencoded`` body as lists of values per field."""
    body = await read_body(request, "application/x-www-form-urlencoded")
    try:
        return parse_qs(
            body.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=2000
        )
    except UnicodeDecodeError:
        raise BadRequest("the form is not UTF-8") from None
    except ValueError:
        raise BadRequest("the form has too many fields") from None


async def read_json(request: Request) -> dict[str, Any]:
    """An ``application/json`` body, which must be an object."""
    body = await read_body(request, "application/json")
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadRequest("the request body must be a JSON object")
    return value
