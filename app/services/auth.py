"""Who is calling: API key authentication plus the per-caller rate limit, in one statement, sent on its own round
trip or with the request's read (`StagedAuth`)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from app.repo import auth as auth_repo
from app.repo.connections import Connection, ConnectionLease, Sent
from domain.errors import DomainError, Forbidden, RateLimited, Unauthenticated
from domain.keys import KEY_PREFIXES, KeyKind, hash_key, is_well_formed

WINDOW = timedelta(minutes=1)


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


class RecentKeys:
    """The keys this process admitted in the last `ttl` seconds, by hash, with whom each belongs to: a hint of which
    route to take, never a grant. A read by a key found here sends its authentication with its query, in one round
    trip (`StagedAuth`); every other request is authenticated first, so a caller without a valid key, or over its
    allowance, never has the database run a query for it, and a key admitted once costs at most one unadmitted
    query per later refusal (it is forgotten then). A key also leaves when it stays unused for `ttl`."""

    def __init__(self, *, ttl: float = 30.0, capacity: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self._ttl, self._capacity, self._clock = ttl, capacity, clock
        # (kind, key hash) -> (remembered until, the principal's name); oldest first, for eviction
        self._entries: OrderedDict[tuple[KeyKind, str], tuple[float, str]] = OrderedDict()

    def remember(self, kind: KeyKind, key_hash: str, principal: str) -> None:
        self._entries[kind, key_hash] = (self._clock() + self._ttl, principal)
        self._entries.move_to_end((kind, key_hash))
        if len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def forget(self, kind: KeyKind, key_hash: str) -> None:
        self._entries.pop((kind, key_hash), None)

    def principal_of(self, kind: KeyKind, key_hash: str) -> str | None:
        """The name of whom a recent key belongs to (a key never changes owner), or None if it is not recent."""
        entry = self._entries.get((kind, key_hash))
        if entry is None:
            return None
        until, principal = entry
        if until < self._clock():
            del self._entries[kind, key_hash]
            return None
        return principal


async def authenticate(
    lease: ConnectionLease, caller: Caller, kind: KeyKind, recent: RecentKeys | None = None
) -> tuple[Principal, RateLimitState]:
    """Resolve the caller and count the request. Raises for a bad key, an inactive agent or a spent allowance; a
    request without a valid key is counted against its address's allowance, so a key cannot be guessed at speed.
    An admitted key is remembered in `recent`, a refused one forgotten."""
    try:
        key_hash = _key_hash(caller, kind)
    except Unauthenticated:
        await admit_anonymous(lease, caller)
        raise
    emission = WINDOW / caller.limit_per_minute
    found = await auth_repo.authenticate(
        await lease.connection(), key_hash=key_hash, kind=kind.value, emission=emission, window=WINDOW
    )
    return await _decide(lease, caller, kind, key_hash, found, recent)


class StagedAuth:
    """An authentication that goes out with the request's first read instead of before it (`send`, then `settle`
    when the round trip is back), or on its own (`resolve`) when the request reads nothing first. Staged only for
    a key in `RecentKeys`, so that a stranger's request costs no query; its outcome is the same either way."""

    def __init__(self, caller: Caller, kind: KeyKind, key_hash: str, principal: str, recent: RecentKeys) -> None:
        self.caller, self.kind, self.key_hash, self.recent = caller, kind, key_hash, recent
        self.principal = principal  # whom the key belonged to when last admitted (the list a cursor is bound to)
        self.outcome: tuple[Principal, RateLimitState] | DomainError | None = None  # None until settled

    async def send(self, connection: Connection) -> Sent[tuple[auth_repo.KeyOwner, auth_repo.RateDecision] | None]:
        return await auth_repo.send_authenticate(
            connection,
            key_hash=self.key_hash,
            kind=self.kind.value,
            emission=WINDOW / self.caller.limit_per_minute,
            window=WINDOW,
        )

    async def settle(
        self, lease: ConnectionLease, sent: Sent[tuple[auth_repo.KeyOwner, auth_repo.RateDecision] | None]
    ) -> tuple[Principal, RateLimitState]:
        """Decide from the sent authentication's answer; raises as `authenticate` does."""
        return await self._record(
            _decide(lease, self.caller, self.kind, self.key_hash, await sent.result(), self.recent)
        )

    async def resolve(self, lease: ConnectionLease) -> tuple[Principal, RateLimitState]:
        """The outcome, authenticating on its own round trip if nothing has sent it yet."""
        if self.outcome is None:
            return await self._record(authenticate(lease, self.caller, self.kind, self.recent))
        if isinstance(self.outcome, DomainError):
            raise self.outcome
        return self.outcome

    async def _record(self, deciding: Awaitable[tuple[Principal, RateLimitState]]) -> tuple[Principal, RateLimitState]:
        try:
            self.outcome = await deciding
        except DomainError as refused:
            self.outcome = refused
            raise
        return self.outcome


def stage(caller: Caller, kind: KeyKind, recent: RecentKeys) -> StagedAuth | None:
    """A `StagedAuth` for a caller whose key this process admitted lately, else None (authenticate it now)."""
    try:
        key_hash = _key_hash(caller, kind)
    except Unauthenticated:
        return None
    principal = recent.principal_of(kind, key_hash)
    return StagedAuth(caller, kind, key_hash, principal, recent) if principal is not None else None


async def admit_anonymous(lease: ConnectionLease, caller: Caller) -> RateLimitState:
    """Count a request that carries no valid key against its address; RateLimitExceeded when that is spent."""
    limit = caller.anonymous_limit_per_minute
    emission = WINDOW / limit
    decision = await auth_repo.admit_anonymous(
        await lease.connection(), principal=f"address:{caller.address_key}", emission=emission, window=WINDOW
    )
    return _rate_state(decision, limit, emission)


def _key_hash(caller: Caller, kind: KeyKind) -> str:
    token = bearer_token(caller.authorization, kind)
    if not is_well_formed(token, kind):
        raise _invalid_key(kind)
    return hash_key(token)


async def _decide(
    lease: ConnectionLease,
    caller: Caller,
    kind: KeyKind,
    key_hash: str,
    found: tuple[auth_repo.KeyOwner, auth_repo.RateDecision] | None,
    recent: RecentKeys | None,
) -> tuple[Principal, RateLimitState]:
    try:
        admitted = _admit(caller, kind, found)
    except DomainError as refused:
        if recent is not None:
            recent.forget(kind, key_hash)
        if isinstance(refused, Unauthenticated):
            await admit_anonymous(lease, caller)  # counted by its address, as a request without a key
        raise
    if recent is not None:
        recent.remember(kind, key_hash, admitted[0].name)
    return admitted


def _admit(
    caller: Caller, kind: KeyKind, found: tuple[auth_repo.KeyOwner, auth_repo.RateDecision] | None
) -> tuple[Principal, RateLimitState]:
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
