"""Guards (authentication, rate limit, idempotency claim) and the dependencies handlers receive.

Guards run before the body is parsed, so the check order is TaskHive's: auth, rate limit, then the route's own
validation and logic.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import msgspec
import structlog
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency, Provide
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler
from litestar.types import Guard

from app.http import context, json_input
from app.http.errors import render_error
from app.network import client_address, limit_key
from app.services import auth as auth_service
from app.services.auth import Principal, RateLimitExceeded, RateLimitState
from app.services.idempotency import MAX_KEY_LENGTH, IdempotencyRequest, IdempotentCall
from app.services.uow import UnitOfWork, Viewer
from domain.errors import DomainError, InvalidParameter
from domain.keys import KeyKind
from domain.tasks import Actor

IDEMPOTENT_METHODS = frozenset({"POST", "PATCH", "DELETE"})


class IdempotencyKeyTooLong(InvalidParameter):
    code = "IDEMPOTENCY_KEY_TOO_LONG"

    def __init__(self) -> None:
        super().__init__(
            f"Idempotency-Key must be at most {MAX_KEY_LENGTH} characters",
            "Use a UUID (36 characters) as the Idempotency-Key.",
        )


class IdempotencyKeyInvalid(InvalidParameter):
    code = "INVALID_PARAMETER"

    def __init__(self) -> None:
        super().__init__(
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
            "Use a UUID as the Idempotency-Key.",
        )


def _fingerprint(method: str, path: str, body: bytes) -> str:
    # Equivalent JSON bodies (key order, whitespace) are the same request. A body that is not acceptable JSON is
    # fingerprinted as it came: the route refuses it with a 422, which is never stored, so the key stays free.
    try:
        canonical = msgspec.json.encode(json_input.parse(body), order="sorted") if body.strip() else b""
    except json_input.BadJSON:
        canonical = body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


async def _claim_idempotency(
    connection: ASGIConnection[Any, Any, Any, Any],
    handler: BaseRouteHandler,
    ctx: context.RequestContext,
    principal: str,
) -> None:
    if not isinstance(connection, Request) or connection.method not in IDEMPOTENT_METHODS:
        return  # only HTTP requests have a method (and a body)
    key = connection.headers.get("idempotency-key")
    if key is None:
        return
    if len(key) > MAX_KEY_LENGTH:
        raise IdempotencyKeyTooLong()
    if not key or not key.isascii() or not key.isprintable():
        raise IdempotencyKeyInvalid()
    body = await connection.body()
    method, path = connection.method, connection.scope["path"]
    settings = connection.app.state.settings
    ctx.idempotent_call = IdempotentCall(
        IdempotencyRequest(
            principal=principal,
            key=key,
            method=method,
            path=path,
            fingerprint=_fingerprint(method, path, body),
            ttl_hours=settings.idempotency_ttl_hours,
            success_status=handler.status_code if isinstance(handler, HTTPRouteHandler) else 200,
        ),
        render_error=render_error,
    )


def _header_values(connection: ASGIConnection[Any, Any, Any, Any], name: bytes) -> tuple[str, ...]:
    # Read from the scope (ASGI servers send header names lowercased): a guard needs two headers, and Litestar's
    # Headers object costs more to build than the scan.
    return tuple(value.decode("latin-1") for key, value in connection.scope["headers"] if key == name)


@functools.lru_cache(maxsize=4096)
def _addresses(peer: str | None, forwarded_for: tuple[str, ...], trusted_proxies: str) -> tuple[str, str]:
    """The client's address (see app.network: X-Forwarded-For counts only from a trusted proxy), and what the
    anonymous rate limit counts for it. Pure, and the same for every request of a connection: cached."""
    address = client_address(peer, forwarded_for, trusted_proxies)
    return address, limit_key(address)


def _client(connection: ASGIConnection[Any, Any, Any, Any]) -> tuple[str, str]:
    peer = connection.scope.get("client")
    forwarded_for = _header_values(connection, b"x-forwarded-for")
    return _addresses(peer[0] if peer else None, forwarded_for, connection.app.state.settings.trusted_proxies)


def _caller(connection: ASGIConnection[Any, Any, Any, Any], address_key: str) -> auth_service.Caller:
    settings = connection.app.state.settings
    authorization = _header_values(connection, b"authorization")
    return auth_service.Caller(
        authorization=authorization[0] if authorization else None,
        address_key=address_key,
        limit_per_minute=settings.rate_limit_per_minute,
        anonymous_limit_per_minute=settings.anonymous_rate_limit_per_minute,
    )


#: A handler's `opt` flag: its authentication goes out in its query's statement (`DeferredAuth`). For reads whose
#: handler needs nothing of the caller before its query, and whose service reads through `uow.read`.
AUTH_WITH_QUERY = "auth_with_query"


def requires(kind: KeyKind) -> Guard:
    """A guard admitting only callers holding a live key of `kind` (and, for agents, an active agent)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        ctx = context.current()
        caller = _caller(connection, _client(connection)[1])
        if handler.opt.get(AUTH_WITH_QUERY) and (deferred := auth_service.defer(caller, kind)) is not None:
            ctx.deferred_auth = deferred  # decided by the read, or by the lifecycle before the response starts
            return
        try:
            principal, rate = await auth_service.authenticate(ctx.lease, caller, kind)
        except RateLimitExceeded as exceeded:
            ctx.rate = exceeded.state
            raise
        _admitted(ctx, principal, rate)
        await _claim_idempotency(connection, handler, ctx, principal.name)

    guard.__name__ = f"requires_{kind.value}"
    return guard


async def public(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """A guard for unauthenticated routes: counted against the client address's allowance, and idempotency keys
    scoped by that address, so that another anonymous caller cannot be replayed someone else's response."""
    ctx = context.current()
    address, address_key = _client(connection)
    try:
        ctx.rate = await auth_service.admit_anonymous(ctx.lease, _caller(connection, address_key))
    except RateLimitExceeded as exceeded:
        ctx.rate = exceeded.state
        raise
    await _claim_idempotency(connection, handler, ctx, f"anonymous:{address}")


def _admitted(ctx: context.RequestContext, principal: Principal, rate: RateLimitState) -> None:
    ctx.principal, ctx.rate = principal, rate
    structlog.contextvars.bind_contextvars(principal=principal.name, agent_id=principal.agent_id)


async def settle_deferred_auth(ctx: context.RequestContext) -> DomainError | None:
    """Put a deferred authentication's outcome on the request (authenticating now if no read ran it): None when
    the caller was admitted, else the refusal that is the request's answer."""
    deferred, ctx.deferred_auth = ctx.deferred_auth, None
    if deferred is None:
        return None
    try:
        principal, rate = await deferred.resolve(ctx.lease)
    except RateLimitExceeded as exceeded:
        ctx.rate = exceeded.state
        return exceeded
    except DomainError as refused:
        return refused
    _admitted(ctx, principal, rate)
    return None


agent_only = requires(KeyKind.AGENT)
operator_only = requires(KeyKind.OPERATOR)
admin_only = requires(KeyKind.ADMIN)


def provide_uow(request: Request[Any, Any, Any]) -> UnitOfWork:
    ctx = context.current()
    principal = ctx.principal
    return UnitOfWork(
        ctx.lease,
        ctx.idempotent_call,
        observer=request.app.state.commit_observer,
        deferred_auth=ctx.deferred_auth,
        viewer=Viewer(principal.agent_id, principal.operator_id) if principal is not None else None,
    )


# Litestar resolves the dependencies a handler takes at one depth concurrently, spawning a task per dependency in an
# anyio task group, per request; these are plain reads of the request's context, so they are chained instead
# (uow, then principal, then actor: one depth each), which Litestar resolves in turn, on the request's own task.
def provide_principal(uow: NamedDependency[UnitOfWork]) -> Principal:
    del uow  # only orders the resolution (see above)
    ctx = context.current()
    if ctx.deferred_auth is not None:
        raise RuntimeError("a route whose authentication goes out with its query cannot take the caller first")
    principal = ctx.principal
    if principal is None:
        raise RuntimeError("route has no authentication guard")
    return principal


def provide_actor(principal: NamedDependency[Principal]) -> Actor:
    """The calling agent as the marketplace rules see it (its operator counts as itself)."""
    return Actor(agent_id=principal.require_agent_id(), operator_id=principal.require_operator_id())


DEPENDENCIES = {
    "uow": Provide(provide_uow, sync_to_thread=False),
    "principal": Provide(provide_principal, sync_to_thread=False),
    "actor": Provide(provide_actor, sync_to_thread=False),
}
