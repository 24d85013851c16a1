"""Webhook endpoints and deliveries: the records, and what happens after each delivery attempt.

Only a 2xx is a success. 3xx is a failure (never followed). 410 Gone switches the endpoint off at once. 429 waits
at least as long as its Retry-After asks. Everything else is retried on the Standard Webhooks schedule until it
runs out; an endpoint that has failed every attempt for long enough is switched off and its owner told.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from domain.errors import Conflict, NotFound
from domain.webhooks import retry_delay

MAX_WEBHOOKS_PER_AGENT = 5
MAX_ROTATION_OVERLAP_SECONDS = 7 * 86400
DEFAULT_ROTATION_OVERLAP_SECONDS = 86400


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookRecord:
    id: int
    agent_id: int
    url: str
    events: tuple[str, ...]
    is_active: bool
    disabled_reason: str | None
    failure_count: int
    last_triggered_at: datetime | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    secret: str | None = None  # only right after creation or rotation: shown once


class AttemptLogOutcome(StrEnum):
    """An attempt's outcome as the delivery log shows it."""

    IN_PROGRESS = "in_progress"  # claimed and sent (or about to be); no outcome yet
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # an HTTP answer other than 2xx
    TIMEOUT = "timeout"
    NETWORK_ERROR = "network_error"
    BLOCKED = "blocked"  # the URL resolved to an address deliveries may not reach
    # Its worker died, or could not write the outcome, before the claim ran out: the request may or may not have
    # reached the receiver, and the delivery is attempted again (at-least-once: the same webhook-id may arrive twice).
    INTERRUPTED = "interrupted"


def reported_outcome(stored: str, claim_ends_at: datetime | None, now: datetime) -> AttemptLogOutcome:
    """What the log shows for an attempt: one still in progress once its claim has run out was interrupted (its
    delivery is due again from that moment, so another worker may be sending it already)."""
    if stored == AttemptLogOutcome.IN_PROGRESS and (claim_ends_at is None or claim_ends_at <= now):
        return AttemptLogOutcome.INTERRUPTED
    return AttemptLogOutcome(stored)


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptRecord:
    attempt_number: int
    # When the attempt was claimed, right before its request; None only for an attempt made before attempts were
    # recorded at their start (migration 0007), of which nothing but its having happened is known.
    started_at: datetime | None
    duration_ms: int | None  # None while in progress, or when interrupted
    outcome: AttemptLogOutcome
    response_status: int | None
    response_snippet: str | None
    error: str | None
    # When the next attempt is (was) due; while in progress, when the claim ends and the delivery is due again.
    next_attempt_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryRecord:
    id: int
    webhook_id: int
    event_id: int
    event_type: str
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: datetime | None
    created_at: datetime
    completed_at: datetime | None
    attempts: tuple[AttemptRecord, ...] = ()


def webhook_not_found(webhook_id: int) -> NotFound:
    return NotFound(
        f"Webhook {webhook_id} not found",
        "List your webhooks with GET /api/v1/webhooks.",
        code="WEBHOOK_NOT_FOUND",
    )


def delivery_not_found(delivery_id: int) -> NotFound:
    return NotFound(
        f"Delivery {delivery_id} not found for this webhook",
        "List the webhook's deliveries with GET /api/v1/webhooks/{id}/deliveries.",
        code="DELIVERY_NOT_FOUND",
    )


def limit_reached() -> Conflict:
    return Conflict(
        f"Maximum of {MAX_WEBHOOKS_PER_AGENT} webhooks per agent",
        "Delete an existing webhook first (DELETE /api/v1/webhooks/{id}).",
        code="LIMIT_REACHED",
    )


def webhook_disabled(webhook_id: int) -> Conflict:
    return Conflict(
        f"Webhook {webhook_id} is disabled",
        'Fix the endpoint, then re-enable it with PATCH /api/v1/webhooks/{id} {"is_active": true}.',
        code="WEBHOOK_DISABLED",
    )


def delivery_pending(delivery_id: int) -> Conflict:
    return Conflict(
        f"Delivery {delivery_id} is still scheduled",
        "Wait for its next attempt; only succeeded or failed deliveries can be redelivered.",
        code="DELIVERY_PENDING",
    )


@dataclass(frozen=True, slots=True)
class EndpointHealth:
    """The endpoint's failure streak, read under its row lock when an attempt ends."""

    is_active: bool
    failure_count: int
    failing_since: datetime | None
    now: datetime


@dataclass(frozen=True, slots=True)
class DisablePolicy:
    after_failures: int
    after_seconds: float


@dataclass(frozen=True, slots=True)
class AttemptVerdict:
    status: DeliveryStatus
    retry_in_seconds: float | None  # when pending
    counts_as_failure: bool  # towards the endpoint's failure streak
    disable_reason: str | None  # the endpoint is switched off now


def judge_attempt(
    *,
    succeeded: bool,
    response_status: int | None,
    retry_after_seconds: float | None,
    attempts_in_round: int,
    health: EndpointHealth,
    policy: DisablePolicy,
    scale: float = 1.0,
    rng: random.Random | None = None,
    endpoint_at_fault: bool = True,
) -> AttemptVerdict:
    """What follows an attempt. `endpoint_at_fault` is False when nothing reached the endpoint through our own fault
    (its secret could not be opened): retried on the schedule, but no step towards switching the endpoint off."""
    if succeeded:
        return AttemptVerdict(DeliveryStatus.SUCCEEDED, None, False, None)
    if response_status == 410:
        return AttemptVerdict(DeliveryStatus.FAILED, None, True, "the endpoint answered 410 Gone")
    throttled = response_status == 429
    delay = retry_delay(attempts_in_round, scale=scale, rng=rng)
    if delay is not None and throttled and retry_after_seconds is not None:
        delay = max(delay, retry_after_seconds * scale)
    status = DeliveryStatus.FAILED if delay is None else DeliveryStatus.PENDING
    # Throttling is the receiver managing its load, not a broken endpoint.
    counts = not throttled and endpoint_at_fault
    reason = None
    if counts and health.is_active:
        streak = health.failure_count + 1
        since = health.failing_since or health.now
        if streak >= policy.after_failures and health.now - since >= timedelta(seconds=policy.after_seconds):
            reason = f"{streak} consecutive failed attempts since {since.isoformat()}"
    return AttemptVerdict(status, delay, counts, reason)


def callback_delivery_not_found(task_id: int, delivery_id: int) -> NotFound:
    return NotFound(
        f"Delivery {delivery_id} not found for task {task_id}'s callback",
        f"List the callback's deliveries with GET /api/v1/tasks/{task_id}/callback-deliveries.",
        code="DELIVERY_NOT_FOUND",
    )
