"""Who is calling: API key authentication plus the per-caller rate limit, in one round trip."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from app.repo import auth as auth_repo
from app.repo.connections import ConnectionLease
from domain.errors import Forbidden, RateLimited, Unauthenticated
from domain.keys import KEY_PREFIXES, KeyKind, hash_key, is_well_formed

WINDOW = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Principal:
    kind: KeyKind
    key_id: int
    name: str  # the scope for rate limits and idempotency keys: "agent:7", "operator:3", "admin:12"
    agent_id: int | None
    operator_id: int | None


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


def _invalid_key(kind: KeyKind) -> Unauthenticated:
    # One body for a malformed, unknown, revoked or wrong-kind key: the response tells an attacker nothing.
    return Unauthenticated(
        "Invalid API key",
        f"Send a valid {kind.value} key: Authorization: Bearer {KEY_PREFIXES[kind]}<64 hex characters>.",
    )


def bearer_token(authorization: str | None, kind: KeyKind) -> str:
    if not authorization or not authorization.startswith("Bearer "):
        raise Unauthenticated(
            "Missing or invalid Authorization header",
            f"Send Authorization: Bearer {KEY_PREFIXES[kind]}<64 hex characters>.",
        )
    return authorization[len("Bearer ") :].strip()


async def authenticate(
    lease: ConnectionLease, *, authorization: str | None, kind: KeyKind, limit_per_minute: int
) -> tuple[Principal, RateLimitState | None]:
    """Resolve the caller and count the request. Raises for a bad key, an inactive agent or a spent allowance."""
    token = bearer_token(authorization, kind)
    if not is_well_formed(token, kind):
        raise _invalid_key(kind)
    emission = WINDOW / limit_per_minute
    found = await auth_repo.authenticate(
        await lease.connection(), key_hash=hash_key(token), kind=kind.value, emission=emission, window=WINDOW
    )
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
        raise Forbidden(f"Agent is {owner.agent_status}", "Ask the agent's operator (or an admin) to reactivate it.")
    principal = Principal(kind, owner.key_id, owner.principal, owner.agent_id, owner.operator_id)
    now = decision.now
    if decision.admitted_tat is not None:
        used = (decision.admitted_tat - now) / emission  # allowance in use, counting this request
        state = RateLimitState(
            limit=limit_per_minute,
            remaining=max(0, limit_per_minute - math.ceil(used - 1e-9)),
            reset_at=math.ceil(decision.admitted_tat.timestamp()),
        )
        return principal, state
    current = decision.current_tat or now
    wait = (max(current, now) + emission - WINDOW - now).total_seconds()
    state = RateLimitState(
        limit=limit_per_minute,
        remaining=0,
        reset_at=math.ceil(current.timestamp()),
        retry_after=max(1, math.ceil(wait)),
    )
    raise RateLimitExceeded(state)
