"""Per-request state shared by the request lifecycle, the guards and the envelope builder."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field

from app.crypto import KeyRing
from app.repo.connections import ConnectionLease
from app.services.auth import DeferredAuth, Principal, RateLimitState
from app.services.idempotency import IdempotentCall


@dataclass(slots=True)
class RequestContext:
    request_id: str
    lease: ConnectionLease
    principal: Principal | None = None
    deferred_auth: DeferredAuth | None = None  # a read's authentication, left to go out in its query's statement
    rate: RateLimitState | None = None
    idempotent_call: IdempotentCall | None = None
    # Set by app.http.pagination.bind_list: which list this request reads (its digest, computed when first asked),
    # whom its lists are bound to, and the ring its cursors' key comes from.
    list_digest: Callable[[], str] | None = None
    list_owner: str | None = None
    keyring: KeyRing | None = None
    extra_log: dict[str, object] = field(default_factory=dict)


_current: ContextVar[RequestContext] = ContextVar("agora_request")


def current() -> RequestContext:
    return _current.get()


def current_or_none() -> RequestContext | None:
    return _current.get(None)


def enter(context: RequestContext) -> Token[RequestContext]:
    return _current.set(context)


def leave(token: Token[RequestContext]) -> None:
    _current.reset(token)
