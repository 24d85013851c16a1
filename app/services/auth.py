"""Who is calling: API key authentication plus the per-caller rate limit, in one statement, sent on its own or as
part of the request's read (`DeferredAuth`)."""

from __future__ import annotations

import math
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from app.repo import auth as auth_repo
from app.repo.connections import ConnectionLease, Query
from domain.errors import DomainError, Forbidden, RateLimited, Unauthenticated
from domain.keys import KEY_PREFIXES, KeyKind, hash_key, is_well_formed

WINDOW = timedelta(minutes=1)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Principal:
    kind: KeyKind
    key_id: int
    name: str  # the scope for rate limits and idempotency keys: "agent:7", "operator:3", "admin:12"
    agent_id: int | None
    operator_id: int | None

    def require_agent_id(self) -> int:
        """The calling agent's id, for a route behind the agent guard (which admits agent keys only)."""
        if self.agent_id is None:
            raise RuntimeError(f"{self.name} is not an agent: the route lacks the agent guard")
        return self.agent_id

    def require_operator_id(self) -> int:
        """The operator's id: an operator key's own, or an agent's operator (an agent is admitted once claimed)."""
        if self.operator_id is None:
            raise RuntimeError(f"{self.name} has no operator: the route lacks an agent or operator guard")
        return self.operator_id


@dataclass(frozen=True, slots=True)
class RateLimitState:
    limit: int
    remaining: int
    reset_at: int  # unix seconds when the caller's full allowance is back
    retry_after: int | None = None


class RateLimitExceeded(RateLimited):
    def __init__(self, state: RateLimitState) -> None:
        super().__init__(limit=state.limit, retry_after=state.retry_after or 1)
        self.state = state


# Who can bring an inactive agent back: its operator lifts a pause, only an admin a suspension.
_REACTIVATE = {
    "paused": "Ask the agent's operator to resume it (POST /api/v1/operator/agents/{id}/resume).",
    "suspended": "Ask a marketplace admin to reactivate it.",
}


def _invalid_key(kind: KeyKind) -> Unauthenticated:
    # One body for a malformed, unknown, revoked or wrong-kind key: the response tells an attacker nothing.
    return Unauthenticated(
        "Invalid API key",
        f"Send a valid {kind.value} key: Authorization: Bearer {KEY_PREFIXES[kind]}<64 hex characters>.",
    )


def bearer_token(authorization: str | None, kind: KeyKind) -> str:
    # RFC 9110 §11.1: the scheme is case-insensitive ("bearer", "BEARER" are Bearer), one or more spaces follow.
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated(
            "Missing or invalid Authorization header",
            f"Send Authorization: Bearer {KEY_PREFIXES[kind]}<64 hex characters>.",
        )
    return token


@dataclass(frozen=True, slots=True)
class Caller:
    """What the guard knows of a request before its key is checked."""

    authorization: str | None
    address_key: str  # the client's address (or IPv6 /64): what requests without a valid key are counted by
    limit_per_minute: int  # for a valid key
    anonymous_limit_per_minute: int  # for requests without one, per address


async def authenticate(lease: ConnectionLease, caller: Caller, kind: KeyKind) -> tuple[Principal, RateLimitState]:
    """Resolve the caller and count the request. Raises for a bad key, an inactive agent or a spent allowance; a
    request without a valid key is counted against its address's allowance, so a key cannot be guessed at speed."""
    try:
        return await _authenticate(lease, caller, kind)
    except Unauthenticated:
        await admit_anonymous(lease, caller)
        raise


async def admit_anonymous(lease: ConnectionLease, caller: Caller) -> RateLimitState:
    """Count a request that carries no valid key against its address; RateLimitExceeded when that is spent."""
    limit = caller.anonymous_limit_per_minute
    emission = WINDOW / limit
    decision = await auth_repo.admit_anonymous(
        await lease.connection(), principal=f"address:{caller.address_key}", emission=emission, window=WINDOW
    )
    return _rate_state(decision, limit, emission)


async def _authenticate(lease: ConnectionLease, caller: Caller, kind: KeyKind) -> tuple[Principal, RateLimitState]:
    return _admit(caller, kind, await auth_repo.authenticate(await lease.connection(), _key_check(caller, kind)))


def _key_check(caller: Caller, kind: KeyKind) -> auth_repo.KeyCheck:
    """What the statement needs to authenticate the caller; Unauthenticated for a header without a well-formed key,
    which no statement needs to be asked about."""
    token = bearer_token(caller.authorization, kind)
    if not is_well_formed(token, kind):
        raise _invalid_key(kind)
    return auth_repo.KeyCheck(hash_key(token), kind.value, WINDOW / caller.limit_per_minute, WINDOW)


def _admit(caller: Caller, kind: KeyKind, found: auth_repo.CallerFound | None) -> tuple[Principal, RateLimitState]:
    """The statement's answer as the caller's principal and allowance, or the refusal it means."""
    if found is None:
        raise _invalid_key(kind)
    owner, decision = found
    if not owner.active:
        if owner.agent_status == "pending_claim":
            raise Forbidden(
                "Agent is pending_claim",
                "Ask an operator to claim this agent with its verification code (POST /api/v1/operator/agents/claim).",
                code="PENDING_CLAIM",
            )
        # Only an agent's key can be inactive, so it has a status; one without a way back reads as a suspension.
        reactivate = _REACTIVATE.get(owner.agent_status or "suspended", _REACTIVATE["suspended"])
        raise Forbidden(f"Agent is {owner.agent_status}", reactivate)
    principal = Principal(kind, owner.key_id, owner.principal, owner.agent_id, owner.operator_id)
    return principal, _rate_state(decision, caller.limit_per_minute, WINDOW / caller.limit_per_minute)


def asker_of(key_hash: str) -> str:
    """Whom a list read with a deferred authentication is bound to (its cursors), before the key's owner is known:
    the key itself, which has one owner."""
    return f"key:{key_hash}"


class DeferredAuth:
    """A read's authentication, left to go out in its query's statement (`run`) instead of a round trip before it.
    The statement runs the read only for an admitted caller, so a refused one has the database read nothing for
    it, and its outcome is the one `authenticate` gives. A request that reads nothing first is authenticated on its
    own round trip (`resolve`)."""

    def __init__(self, caller: Caller, kind: KeyKind, check: auth_repo.KeyCheck) -> None:
        self.caller, self.kind, self.check = caller, kind, check
        self.outcome: tuple[Principal, RateLimitState] | DomainError | None = None  # None until decided

    @property
    def asker(self) -> str:
        return asker_of(self.check.key_hash)

    async def run(self, lease: ConnectionLease, query: Query[T]) -> T:
        """`query` with this authentication; the refusal is raised instead of its result."""
        found, result = await auth_repo.run_authenticated(await lease.connection(), self.check, query)
        await self._decided(self._decide(lease, found))
        return result

    async def resolve(self, lease: ConnectionLease) -> tuple[Principal, RateLimitState]:
        """The outcome, authenticating on its own round trip if no read has run it."""
        if self.outcome is None:
            return await self._decided(authenticate(lease, self.caller, self.kind))
        if isinstance(self.outcome, DomainError):
            raise self.outcome
        return self.outcome

    async def _decide(
        self, lease: ConnectionLease, found: auth_repo.CallerFound | None
    ) -> tuple[Principal, RateLimitState]:
        try:
            return _admit(self.caller, self.kind, found)
        except Unauthenticated:
            await admit_anonymous(lease, self.caller)  # as `authenticate` counts a bad key, by its address
            raise

    async def _decided(self, deciding: Awaitable[tuple[Principal, RateLimitState]]) -> tuple[Principal, RateLimitState]:
        try:
            self.outcome = await deciding
        except DomainError as refused:
            self.outcome = refused
            raise
        return self.outcome


def defer(caller: Caller, kind: KeyKind) -> DeferredAuth | None:
    """A `DeferredAuth` for a caller with a well-formed key; None for any other (authenticate it now: it is refused
    without a read)."""
    try:
        return DeferredAuth(caller, kind, _key_check(caller, kind))
    except Unauthenticated:
        return None


def _rate_state(decision: auth_repo.RateDecision, limit: int, emission: timedelta) -> RateLimitState:
    """The headers' view of a GCRA decision; RateLimitExceeded when the request was not admitted."""
    now = decision.now
    if decision.admitted_tat is not None:
        used = (decision.admitted_tat - now) / emission  # allowance in use, counting this request
        return RateLimitState(
            limit=limit,
            remaining=max(0, limit - math.ceil(used - 1e-9)),
            reset_at=math.ceil(decision.admitted_tat.timestamp()),
        )
    current = decision.current_tat or now
    wait = (max(current, now) + emission - WINDOW - now).total_seconds()
    state = RateLimitState(
        limit=limit,
        remaining=0,
        reset_at=math.ceil(current.timestamp()),
        retry_after=max(1, math.ceil(wait)),
    )
    raise RateLimitExceeded(state)


async def forget_idle_callers(lease: ConnectionLease) -> int:
    """Delete rate-limit rows whose allowance is whole again; returns how many went."""
    removed = 0
    while True:
        batch = await auth_repo.delete_idle(await lease.connection())
        removed += batch
        if batch == 0:
            return removed
