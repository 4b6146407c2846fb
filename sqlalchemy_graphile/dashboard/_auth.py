"""Who may use the dashboard: the four ways it can decide, and the check of a request.

* :class:`NoAuth`: nobody signs in, so only this machine may connect. A request is refused
  unless it comes from a loopback address *and* names a loopback host (``localhost``,
  ``127.0.0.1``, ``[::1]``), which also stops a web page from reaching the dashboard through
  a DNS name that points at 127.0.0.1.
* :class:`BasicAuth`: HTTP basic authentication with one user name and password.
* :class:`BearerAuth`: an ``Authorization: Bearer <token>`` header (API clients, proxies).
* :class:`TrustMountingApp`: the application that mounts the dashboard has authenticated
  the request already; an optional ``check`` decides who may see the dashboard.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import inspect
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.requests import Request

from ..errors import ConfigurationError, InvalidCallbackError
from ..job_spec import check_text

#: The realm browsers show in their sign-in prompt.
REALM = "sqlalchemy-graphile dashboard"

#: A ``TrustMountingApp`` check: the user name to show, or ``None`` to refuse.
Check = Callable[[Request], str | Awaitable[str | None] | None]


def _secret(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{what} must be a non-empty str")
    return check_text(value, what, ConfigurationError)


@dataclass(frozen=True, slots=True)
class NoAuth:
    """Nobody signs in; only requests from this machine, to a loopback host name, are
    served (others get 403). Use it for a dashboard bound to 127.0.0.1."""


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """HTTP basic authentication: browsers ask for ``username`` and ``password``. Use it
    over HTTPS (or on a loopback address): basic credentials travel unencrypted otherwise.
    Raises :class:`ConfigurationError` for an empty name or password, or a name with ``:``.
    """

    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        _secret(self.username, "the user name")
        _secret(self.password, "the password")
        if ":" in self.username:
            raise ConfigurationError("the user name must not contain ':'")


@dataclass(frozen=True, slots=True)
class BearerAuth:
    """Requests must carry ``Authorization: Bearer <token>``: for API clients, or behind a
    proxy that adds the header. Raises :class:`ConfigurationError` for an empty token or
    one with whitespace."""

    token: str = field(repr=False)

    def __post_init__(self) -> None:
        _secret(self.token, "the bearer token")
        if any(c.isspace() for c in self.token):
            raise ConfigurationError("the bearer token must not contain whitespace")


@dataclass(frozen=True, slots=True)
class TrustMountingApp:
    """The mounting application authenticates; the dashboard serves whatever reaches it.

    ``check``, if given, is called with each Starlette ``Request`` (sync or async) and
    returns the name to show for the user, or ``None`` to refuse the request with 403; a
    ``check`` that is not callable raises :class:`InvalidCallbackError`. Use
    it to apply the same rule as your own endpoints: FastAPI runs no dependencies for a
    mounted app, so a check (or a middleware of the mounting app) has to do it.
    Without ``check``, the name comes from ``scope["user"]`` when an authentication
    middleware of the mounting app set one.
    """

    check: Check | None = None

    def __post_init__(self) -> None:
        if self.check is not None and not callable(self.check):
            raise InvalidCallbackError("check must be a function of the request")


#: The ways the dashboard can authenticate.
DashboardAuth = NoAuth | BasicAuth | BearerAuth | TrustMountingApp


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is not served: an HTTP status, a message and extra headers."""

    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


def check_auth(auth: object) -> DashboardAuth:
    """``auth`` if it is one of the auth modes, else :class:`ConfigurationError`."""
    if isinstance(auth, NoAuth | BasicAuth | BearerAuth | TrustMountingApp):
        return auth
    raise ConfigurationError(
        "auth must be NoAuth(), BasicAuth(username, password), BearerAuth(token) or "
        f"TrustMountingApp(), not {auth!r}"
    )


def describe(auth: DashboardAuth) -> str:
    """The mode's name, as the session API reports it."""
    names = {NoAuth: "none", BasicAuth: "basic", BearerAuth: "bearer"}
    return names.get(type(auth), "mounting-app")


async def authenticate(auth: DashboardAuth, request: Request) -> str | Refusal:
    """The user name to show for ``request``, or why it is refused."""
    if isinstance(auth, NoAuth):
        return _loopback_only(request)
    if isinstance(auth, BasicAuth):
        return _basic(auth, request)
    if isinstance(auth, BearerAuth):
        return _bearer(auth, request)
    return await _trusted(auth, request)


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a host name or IP address, IPv6 with or without brackets) is this
    machine's loopback: ``localhost``, 127.0.0.0/8 or ::1."""
    name = host.strip().lower().removeprefix("[").removesuffix("]")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header.partition("]")[0] + "]"
    return host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header


def _loopback_only(request: Request) -> str | Refusal:
    client = request.client.host if request.client is not None else ""
    host = _host_name(request.headers.get("host", ""))
    if is_loopback_host(client) and is_loopback_host(host):
        return "local user"
    return Refusal(
        403,
        "This dashboard has no sign-in, so it only answers requests from this machine "
        "to http://127.0.0.1 or http://localhost. Serve it with basic or bearer "
        "authentication to reach it from elsewhere.",
    )


def _same(given: str, expected: str) -> bool:
    # Digests first: compare_digest would otherwise reveal the expected length.
    return hmac.compare_digest(
        hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest(),
        hashlib.sha256(expected.encode("utf-8")).digest(),
    )


def _basic(auth: BasicAuth, request: Request) -> str | Refusal:
    challenge = {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'}
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return Refusal(401, "Sign in to see the dashboard.", challenge)
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return Refusal(401, "The credentials are not valid basic authentication.", challenge)
    username, _, password = decoded.partition(":")
    # Both compared every time, so the time taken does not tell which one was wrong.
    name_ok = _same(username, auth.username)
    password_ok = _same(password, auth.password)
    if name_ok and password_ok:
        return auth.username
    return Refusal(401, "Wrong user name or password.", challenge)


def _bearer(auth: BearerAuth, request: Request) -> str | Refusal:
    challenge = {"WWW-Authenticate": f'Bearer realm="{REALM}"'}
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return Refusal(401, "This dashboard needs an Authorization: Bearer header.", challenge)
    if _same(token.strip(), auth.token):
        return "token holder"
    return Refusal(401, "The bearer token is not valid.", challenge)


async def _trusted(auth: TrustMountingApp, request: Request) -> str | Refusal:
    if auth.check is None:
        user = request.scope.get("user")
        if user is not None and getattr(user, "is_authenticated", False):
            return str(getattr(user, "display_name", "") or "signed-in user")
        return "application user"
    name = auth.check(request)
    if inspect.isawaitable(name):
        name = await name
    if name is None:
        return Refusal(403, "You are not allowed to see the job queue dashboard.")
    return str(name)
