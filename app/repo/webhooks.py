"""Webhook endpoints, and the deliveries and attempts their owners can read.

A task's callback is a webhook row too (`task_id` set, app.repo.callbacks): every statement here that finds an
agent's endpoints says `task_id IS NULL`, so a callback is in no list, count or limit of /webhooks, and PATCH,
DELETE and rotation find no callback by its id. The delivery statements take a webhook id their caller has
already checked, and serve both."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from app.repo.connections import Connection, one_row
from app.repo.rows import Column, Nested, row_type
from domain.deliveries import AttemptRecord, DeliveryRecord, DeliveryStatus, WebhookRecord, reported_outcome

# Every statement that returns an endpoint names its row w: the reads, and the writes' RETURNING.
_WEBHOOK = row_type(
    WebhookRecord,
    id="w.id",
    agent_id="w.agent_id",
    url="w.url",
    events=Column("w.events", tuple),
    is_active="w.is_active",
    disabled_reason="w.disabled_reason",
    failure_count="w.failure_count",
    last_triggered_at="w.last_triggered_at",
    previous_secret_expires_at="w.previous_secret_expires_at",  # noqa: S106 - a column, not a secret
    created_at="w.created_at",
)


async def reserve_id(connection: Connection, agent_id: int) -> int:
    """Lock the agent's row, so that `insert` counts its endpoints exactly under concurrent registrations (the
    insert's own snapshot is taken after the lock is granted), and take the new endpoint's id: its secret is
    sealed to it before the row exists."""
    async with connection.pipeline():
        await connection.execute("SELECT 1 FROM agent WHERE id = %s FOR UPDATE", (agent_id,))
        cursor = await connection.execute("SELECT nextval(pg_get_serial_sequence('webhook', 'id'))")
        (webhook_id,) = await one_row(cursor)
    return int(webhook_id)


async def insert(
    connection: Connection,
    *,
    webhook_id: int,
    agent_id: int,
    url: str,
    events: Sequence[str],
    sealed_secret: bytes,
    limit: int,
) -> WebhookRecord | None:
    """Create the endpoint (after `reserve_id`) unless the agent already has `limit`; None then."""
    cursor = await connection.execute(
        f"""
        INSERT INTO webhook AS w (id, agent_id, url, events, secret)
        SELECT %(id)s, %(agent)s, %(url)s, %(events)s, %(secret)s
         WHERE (SELECT count(*) FROM webhook WHERE agent_id = %(agent)s AND task_id IS NULL) < %(limit)s
        RETURNING {_WEBHOOK.columns}
        """,
        {
            "id": webhook_id,
            "agent": agent_id,
            "url": url,
            "events": list(events),
            "secret": sealed_secret,
            "limit": limit,
        },
    )
    row = await cursor.fetchone()
    return _WEBHOOK.read(row, 0) if row else None


async def get(connection: Connection, webhook_id: int) -> WebhookRecord | None:
    cursor = await connection.execute(
        f"SELECT {_WEBHOOK.columns} FROM webhook w WHERE w.id = %s AND w.task_id IS NULL", (webhook_id,)
    )
    row = await cursor.fetchone()
    return _WEBHOOK.read(row, 0) if row else None


async def for_agent(connection: Connection, agent_id: int, *, after_id: int, limit: int) -> list[WebhookRecord]:
    cursor = await connection.execute(
        f"""SELECT {_WEBHOOK.columns} FROM webhook w
             WHERE w.agent_id = %s AND w.task_id IS NULL AND w.id > %s ORDER BY w.id LIMIT %s""",
        (agent_id, after_id, limit),
    )
    return _WEBHOOK.read_all(await cursor.fetchall())


async def delete(connection: Connection, webhook_id: int, agent_id: int) -> bool:
    cursor = await connection.execute(
        "DELETE FROM webhook WHERE id = %s AND agent_id = %s AND task_id IS NULL", (webhook_id, agent_id)
    )
    return cursor.rowcount == 1


async def update(
    connection: Connection,
    webhook_id: int,
    agent_id: int,
    *,
    url: str | None,
    events: Sequence[str] | None,
    enable: bool | None,
) -> WebhookRecord | None:
    """Change the URL or events; `enable` True switches a disabled endpoint back on with a clean failure streak,
    False switches it off by the owner's choice."""
    cursor = await connection.execute(
        f"""
        UPDATE webhook w SET
               url = coalesce(%(url)s, w.url),
               events = coalesce(%(events)s, w.events),
               is_active = coalesce(%(enable)s, w.is_active),
               disabled_at = CASE WHEN %(enable)s IS NULL THEN w.disabled_at
                                  WHEN %(enable)s THEN NULL ELSE coalesce(w.disabled_at, now()) END,
               disabled_reason = CASE WHEN %(enable)s IS NULL THEN w.disabled_reason
                                      WHEN %(enable)s THEN NULL ELSE coalesce(w.disabled_reason, 'disabled by its owner') END,
               failure_count = CASE WHEN %(enable)s THEN 0 ELSE w.failure_count END,
               failing_since = CASE WHEN %(enable)s THEN NULL ELSE w.failing_since END
         WHERE w.id = %(id)s AND w.agent_id = %(agent)s AND w.task_id IS NULL
        RETURNING {_WEBHOOK.columns}
        """,
        {
            "id": webhook_id,
            "agent": agent_id,
            "url": url,
            "events": list(events) if events is not None else None,
            "enable": enable,
        },
    )
    row = await cursor.fetchone()
    return _WEBHOOK.read(row, 0) if row else None


async def rotate_secret(
    connection: Connection, webhook_id: int, agent_id: int, *, sealed_secret: bytes, overlap_seconds: int
) -> WebhookRecord | None:
    """The new secret signs from now on; the old one also signs for `overlap_seconds` (0: not at all). Both are
    sealed to the row, so the old one moves into previous_secret as it is."""
    cursor = await connection.execute(
        f"""
        UPDATE webhook w SET
               previous_secret = CASE WHEN %(overlap)s > 0 THEN w.secret END,
               previous_secret_expires_at = CASE WHEN %(overlap)s > 0
                                                 THEN now() + make_interval(secs => %(overlap)s) END,
               secret = %(secret)s
         WHERE w.id = %(id)s AND w.agent_id = %(agent)s AND w.task_id IS NULL
        RETURNING {_WEBHOOK.columns}
        """,
        {"id": webhook_id, "agent": agent_id, "secret": sealed_secret, "overlap": overlap_seconds},
    )
    row = await cursor.fetchone()
    return _WEBHOOK.read(row, 0) if row else None


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _attempts(logged: Sequence[dict[str, Any]], now: datetime) -> tuple[AttemptRecord, ...]:
    """A delivery's attempts as its log shows them at `now`."""
    return tuple(
        AttemptRecord(
            attempt_number=a["attempt_number"],
            started_at=_moment(a["started_at"]),
            duration_ms=a["duration_ms"],
            # An attempt still in progress after its claim ran out was interrupted: the same rule for every reader.
            outcome=reported_outcome(a["outcome"], _moment(a["next_attempt_at"]), now),
            response_status=a["response_status"],
            response_snippet=a["response_snippet"],
            error=a["error"],
            next_attempt_at=_moment(a["next_attempt_at"]),
        )
        for a in logged
    )


# A delivery (d) of its event (e), with all its attempts.
_DELIVERY = row_type(
    DeliveryRecord,
    id="d.id",
    webhook_id="d.webhook_id",
    event_id="d.event_id",
    event_type="e.type",
    status=Column("d.status", DeliveryStatus),
    attempt_count="d.attempt_count",
    next_attempt_at="d.next_attempt_at",
    created_at="d.created_at",
    completed_at="d.completed_at",
    attempts=Nested(
        row_type(
            _attempts,
            logged="""coalesce((SELECT json_agg(json_build_object(
                           'attempt_number', a.attempt_number, 'started_at', a.started_at,
                           'duration_ms', a.duration_ms, 'outcome', a.outcome,
                           'response_status', a.response_status, 'response_snippet', a.response_snippet,
                           'error', a.error, 'next_attempt_at', a.next_attempt_at) ORDER BY a.attempt_number)
                           FROM webhook_attempt a WHERE a.delivery_id = d.id), '[]')""",
            now="now()",  # the database's clock, the one the claims' leases run on
        )
    ),
)


async def deliveries(
    connection: Connection, webhook_id: int, *, before_id: int | None, limit: int, status: DeliveryStatus | None
) -> list[DeliveryRecord]:
    """Newest first, each with all its attempts."""
    cursor = await connection.execute(
        f"""SELECT {_DELIVERY.columns} FROM webhook_delivery d JOIN event e ON e.id = d.event_id
             WHERE d.webhook_id = %(webhook)s AND (%(before)s::bigint IS NULL OR d.id < %(before)s)
               AND (%(status)s::text IS NULL OR d.status = %(status)s)
             ORDER BY d.id DESC LIMIT %(limit)s""",
        {"webhook": webhook_id, "before": before_id, "limit": limit, "status": status.value if status else None},
    )
    return _DELIVERY.read_all(await cursor.fetchall())


async def delivery(connection: Connection, webhook_id: int, delivery_id: int) -> DeliveryRecord | None:
    cursor = await connection.execute(
        f"""SELECT {_DELIVERY.columns} FROM webhook_delivery d JOIN event e ON e.id = d.event_id
             WHERE d.webhook_id = %s AND d.id = %s""",
        (webhook_id, delivery_id),
    )
    row = await cursor.fetchone()
    return _DELIVERY.read(row, 0) if row else None


async def redeliver(connection: Connection, webhook_id: int, delivery_id: int) -> bool:
    """Schedule a finished delivery again, now, with a fresh retry schedule; False when it is still pending."""
    cursor = await connection.execute(
        """UPDATE webhook_delivery SET status = 'pending', next_attempt_at = now(), completed_at = NULL,
                  retry_base = attempt_count
            WHERE webhook_id = %s AND id = %s AND status <> 'pending'""",
        (webhook_id, delivery_id),
    )
    return cursor.rowcount == 1
