"""Wire types for webhook endpoints, their deliveries and attempts."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from app.http.envelope import Meta as EnvelopeMeta
from app.http.schemas.common import Timestamp
from domain.deliveries import (
    DEFAULT_ROTATION_OVERLAP_SECONDS,
    MAX_ROTATION_OVERLAP_SECONDS,
    AttemptLogOutcome,
    AttemptRecord,
    DeliveryRecord,
    DeliveryStatus,
    WebhookRecord,
)
from domain.events import SUBSCRIBABLE

# The pattern documents the first of the SSRF guard's checks (domain.webhooks), which refuses what it does not match.
Url = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=2048,
        description="http(s) URL on the public internet",
        extra_json_schema={"pattern": "^[Hh][Tt][Tt][Pp][Ss]?://\\S+$"},
    ),
]
# The service checks the names (app.services.webhooks.check_events, with its own message); the enum documents them.
EventName = Annotated[str, Meta(extra_json_schema={"enum": list(SUBSCRIBABLE)})]
EventNames = Annotated[list[EventName], Meta(min_length=1, max_length=32, description="Event types to receive")]


class WebhookIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: Url
    events: EventNames


class WebhookUpdateIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: Url | UnsetType = UNSET
    events: EventNames | UnsetType = UNSET
    # true re-enables a disabled endpoint with a clean failure streak; false switches it off.
    is_active: bool | UnsetType = UNSET


# A PATCH must change something: `{}` is refused (422), which the schema says with minProperties.
WebhookUpdateBody = Annotated[WebhookUpdateIn, Meta(extra_json_schema={"minProperties": 1})]


class RotateSecretIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # How long the old secret keeps signing beside the new one (0: it stops at once).
    overlap_seconds: Annotated[int, Meta(ge=0, le=MAX_ROTATION_OVERLAP_SECONDS)] = DEFAULT_ROTATION_OVERLAP_SECONDS


class WebhookCreatedOut(msgspec.Struct, kw_only=True):
    id: int
    url: str
    secret: str
    events: list[str]
    is_active: bool
    created_at: Timestamp

    @classmethod
    def of(cls, record: WebhookRecord) -> WebhookCreatedOut:
        return cls(
            id=record.id,
            url=record.url,
            secret=record.secret or "",
            events=list(record.events),
            is_active=record.is_active,
            created_at=record.created_at,
        )


class NoteMeta(EnvelopeMeta, kw_only=True):
    note: str


class WebhookCreatedEnvelope(msgspec.Struct, kw_only=True):
    """TaskHive's 201 for a new webhook: the envelope with a `meta.note` that the secret is shown once."""

    ok: Literal[True] = True
    data: WebhookCreatedOut
    meta: NoteMeta


class WebhookOut(msgspec.Struct, kw_only=True):
    id: int
    url: str
    events: list[str]
    is_active: bool
    failure_count: int
    last_triggered_at: Timestamp | None
    disabled_reason: str | None
    previous_secret_expires_at: Timestamp | None
    created_at: Timestamp

    @classmethod
    def of(cls, record: WebhookRecord) -> WebhookOut:
        return cls(
            id=record.id,
            url=record.url,
            events=list(record.events),
            is_active=record.is_active,
            failure_count=record.failure_count,
            last_triggered_at=record.last_triggered_at,
            disabled_reason=record.disabled_reason,
            previous_secret_expires_at=record.previous_secret_expires_at,
            created_at=record.created_at,
        )


class WebhookDeletedOut(msgspec.Struct, kw_only=True):
    id: int
    deleted: bool = True


class SecretRotatedOut(msgspec.Struct, kw_only=True):
    id: int
    secret: str
    previous_secret_expires_at: Timestamp | None


class AttemptOut(msgspec.Struct, kw_only=True):
    attempt_number: int
    # null only for an attempt made before attempts were recorded as they start (only its having happened is known)
    started_at: Timestamp | None
    duration_ms: int | None  # null while in progress, or interrupted
    # interrupted: its worker died or could not record the outcome before its claim ran out; the request may have
    # reached the receiver, and the delivery is sent again with the same webhook-id.
    outcome: AttemptLogOutcome
    response_status: int | None
    response_snippet: str | None
    error: str | None
    next_attempt_at: Timestamp | None

    @classmethod
    def of(cls, record: AttemptRecord) -> AttemptOut:
        return cls(
            attempt_number=record.attempt_number,
            started_at=record.started_at,
            duration_ms=record.duration_ms,
            outcome=record.outcome,
            response_status=record.response_status,
            response_snippet=record.response_snippet,
            error=record.error,
            next_attempt_at=record.next_attempt_at,
        )


class DeliveryOut(msgspec.Struct, kw_only=True):
    id: int
    webhook_id: int
    event_id: int
    event: str
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: Timestamp | None
    created_at: Timestamp
    completed_at: Timestamp | None
    attempts: list[AttemptOut]

    @classmethod
    def of(cls, record: DeliveryRecord) -> DeliveryOut:
        return cls(
            id=record.id,
            webhook_id=record.webhook_id,
            event_id=record.event_id,
            event=record.event_type,
            status=record.status,
            attempt_count=record.attempt_count,
            next_attempt_at=record.next_attempt_at,
            created_at=record.created_at,
            completed_at=record.completed_at,
            attempts=[AttemptOut.of(a) for a in record.attempts],
        )
