"""The delivery queue: claiming due deliveries under a lease, and recording each attempt as it starts and ends.

A claimed delivery's `next_attempt_at` becomes its lease's end: if the worker dies mid-attempt the delivery is due
again once the lease runs out, and another worker sends it (a duplicate is possible, a loss is not). Claims skip
rows another worker holds (`FOR UPDATE SKIP LOCKED`) and take at most a few deliveries per endpoint, so one slow
endpoint cannot fill every worker slot.

The claim also writes each attempt, `in_progress`, in the same statement (no extra round trip), and the attempt's
end fills in its outcome: an attempt whose worker died or lost the database stays listed, and reads as
`interrupted` once the lease is over (`domain.deliveries.reported_outcome`).

Shared matches (`task.new_match`, one event for every agent a task matches) get their deliveries here rather than
from the trigger, after the posting transaction has committed: `fan_out_matches` takes the matches after the
fan-out's cursor in commit-safe position order and queues one delivery per subscribed webhook of each matching
agent, moving the cursor in the same statement. Posting pays for two rows, however many agents match.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from app.repo.connections import Connection, one_row
from app.repo.events import HORIZON, compact_json, match_rule
from app.repo.rows import Column, Nested, row_type
from domain.deliveries import AttemptVerdict, DeliveryStatus, EndpointHealth


@dataclass(frozen=True, slots=True)
class DueDelivery:
    id: int
    webhook_id: int
    attempt_number: int  # this attempt's, counted over the delivery's life
    attempts_in_round: int  # this attempt's, counted from the last (re)delivery: the retry schedule's clock
    url: str
    sealed_secrets: tuple[bytes, ...]  # as stored: the current secret first, then one still in its rotation overlap
    event_id: int
    event_type: str
    event_data: bytes
    event_created_at: datetime


def _sealed_secrets(current: bytes, previous: bytes | None) -> tuple[bytes, ...]:
    return (bytes(current), bytes(previous)) if previous else (bytes(current),)


# A claimed delivery (d), as its claim's UPDATE returns it, with its endpoint (w) and event (e).
_DUE_DELIVERY = row_type(
    DueDelivery,
    id="d.id",
    webhook_id="d.webhook_id",
    attempt_number="d.attempt_count",
    attempts_in_round="d.attempt_count - d.retry_base",
    url="w.url",
    sealed_secrets=Nested(
        row_type(
            _sealed_secrets,
            current="w.secret",
            previous="CASE WHEN w.previous_secret_expires_at > now() THEN w.previous_secret END",
        )
    ),
    event_id="e.id",
    event_type="e.type",
    event_data=Column("e.data::text", compact_json),
    event_created_at="e.created_at",
)

_CLAIM = f"""
WITH running AS (
    SELECT * FROM unnest(%(running_ids)s::bigint[], %(running_counts)s::int[]) AS r (webhook_id, attempts)
), ranked AS (
    SELECT d.id, d.webhook_id, d.next_attempt_at,
           row_number() OVER (PARTITION BY d.webhook_id ORDER BY d.next_attempt_at, d.id) AS per_endpoint
      FROM (SELECT d.id, d.webhook_id, d.next_attempt_at
              FROM webhook_delivery d JOIN webhook w ON w.id = d.webhook_id AND w.is_active
             WHERE d.status = 'pending' AND d.next_attempt_at <= now()
               AND d.webhook_id <> ALL (%(busy)s::bigint[])
             ORDER BY d.next_attempt_at LIMIT %(scan)s) d
), picked AS (
    SELECT d.id, d.attempt_count FROM webhook_delivery d  -- the locked row's attempt_count (FOR UPDATE reads it)
     WHERE d.id IN (SELECT r.id FROM ranked r
                     WHERE r.per_endpoint <= %(per_endpoint)s
                           - coalesce((SELECT attempts FROM running WHERE running.webhook_id = r.webhook_id), 0)
                     ORDER BY r.next_attempt_at LIMIT %(limit)s)
       AND d.status = 'pending' AND d.next_attempt_at <= now()
       FOR UPDATE SKIP LOCKED
), interrupted AS (
    -- Earlier attempts that never got their outcome: their claims have run out (the delivery is due), so their
    -- workers died or lost the database. The log already reads them so; this writes it down. A row locked by a late
    -- worker recording its outcome right now is skipped (a later claim catches it if that fails): that worker holds
    -- it and waits for this delivery's row, which this statement holds, so waiting here would deadlock.
    UPDATE webhook_attempt a SET outcome = 'interrupted'
     WHERE a.outcome = 'in_progress'
       AND a.id IN (SELECT a.id FROM webhook_attempt a JOIN picked p ON p.id = a.delivery_id
                     WHERE a.attempt_number <= p.attempt_count AND a.outcome = 'in_progress'
                       AND a.next_attempt_at <= now()  -- its own claim's end: the rule the log reads by
                       FOR UPDATE OF a SKIP LOCKED)
), started AS (
    -- This attempt, written as it starts, so that it is listed whatever becomes of its worker: attempt_count and
    -- the attempts listed stay equal. Its next_attempt_at is the claim's end, when it reads as interrupted.
    INSERT INTO webhook_attempt (delivery_id, attempt_number, started_at, outcome, next_attempt_at)
    SELECT p.id, p.attempt_count + 1, now(), 'in_progress', now() + make_interval(secs => %(lease)s) FROM picked p
)
UPDATE webhook_delivery d
   SET attempt_count = d.attempt_count + 1, next_attempt_at = now() + make_interval(secs => %(lease)s)
  FROM picked, webhook w, event e
 WHERE d.id = picked.id AND w.id = d.webhook_id AND e.id = d.event_id AND w.is_active
RETURNING {_DUE_DELIVERY.columns}
"""


async def claim_due(
    connection: Connection, *, limit: int, per_endpoint: int, running: Mapping[int, int], lease_seconds: float
) -> list[DueDelivery]:
    """Claim up to `limit` due deliveries, so that no endpoint has more than `per_endpoint` attempts running in
    this worker (`running`: attempts already running, by webhook)."""
    busy = [webhook_id for webhook_id, attempts in running.items() if attempts >= per_endpoint]
    cursor = await connection.execute(
        _CLAIM,
        {
            "limit": limit,
            "scan": max(limit * 20, 200),
            "per_endpoint": per_endpoint,
            "busy": busy,
            "running_ids": list(running),
            "running_counts": list(running.values()),
            "lease": lease_seconds,
        },
    )
    return _DUE_DELIVERY.read_all(await cursor.fetchall())


class FanOut(NamedTuple):
    """What one fan-out did: the matches it fanned out, and the deliveries it queued for them."""

    matches: int
    queued: int


_FANNED_OUT = row_type(FanOut, matches="(SELECT count(*) FROM picked)", queued="(SELECT count(*) FROM queued)")

_FAN_OUT = f"""
WITH cursor AS (
    -- One worker at a time moves the cursor; the others skip the fan-out and only claim.
    SELECT tx, event_id FROM match_fan_out FOR UPDATE SKIP LOCKED
), picked AS (
    -- The next matches in position order, among those whose writers have all finished (see app.repo.events):
    -- a match that commits later sorts after the cursor, so none is passed over and none is taken twice.
    SELECT m.* FROM cursor c JOIN event_match m ON (m.tx, m.event_id) > (c.tx, c.event_id)
     WHERE m.tx < {HORIZON}
     ORDER BY m.tx, m.event_id LIMIT %(limit)s
), queued AS (
    -- The same deliveries the trigger makes for an agent's own event, for each agent the match reaches now: to
    -- its webhooks, not to its tasks' callbacks (task_id set), which hear of their own task only.
    INSERT INTO webhook_delivery (webhook_id, event_id, next_attempt_at)
    SELECT w.id, m.event_id, now()
      FROM picked m
      JOIN agent a ON {match_rule()}
      JOIN webhook w ON w.agent_id = a.id AND w.task_id IS NULL AND w.is_active
                    AND 'task.new_match' = ANY (w.events)
    ON CONFLICT (webhook_id, event_id) DO NOTHING
    RETURNING 1
), moved AS (
    UPDATE match_fan_out f SET tx = last.tx, event_id = last.event_id
      FROM (SELECT tx, event_id FROM picked ORDER BY tx DESC, event_id DESC LIMIT 1) last
)
SELECT {_FANNED_OUT.columns}
"""


async def fan_out_matches(connection: Connection, *, limit: int) -> FanOut:
    """Queue the deliveries of up to `limit` matches past the fan-out's cursor, and move it past them, in one
    statement: run inside the transaction that commits them. Returns (matches fanned out, deliveries queued);
    (0, 0) also when another worker holds the cursor."""
    cursor = await connection.execute(_FAN_OUT, {"limit": limit})
    return _FANNED_OUT.read(await one_row(cursor), 0)


async def next_due_in(connection: Connection) -> float | None:
    """Seconds until the earliest pending delivery is due (0 if one is), None when none is pending."""
    # Only active endpoints' deliveries: a disabled endpoint's are never claimed, so they must not wake anyone.
    # (greatest() ignores NULL, hence the HAVING: no pending delivery must read as "none", not as "due now".)
    cursor = await connection.execute(
        """SELECT greatest(extract(epoch FROM min(d.next_attempt_at) - now()), 0)::float8
             FROM webhook_delivery d JOIN webhook w ON w.id = d.webhook_id AND w.is_active
            WHERE d.status = 'pending' HAVING count(*) > 0"""
    )
    row = await cursor.fetchone()
    return row[0] if row else None


_ENDPOINT_HEALTH = row_type(
    EndpointHealth,
    is_active="w.is_active",
    failure_count="w.failure_count",
    failing_since="w.failing_since",
    now="now()",
)


async def lock_endpoint(connection: Connection, webhook_id: int) -> EndpointHealth | None:
    cursor = await connection.execute(
        f"SELECT {_ENDPOINT_HEALTH.columns} FROM webhook w WHERE w.id = %s FOR UPDATE", (webhook_id,)
    )
    row = await cursor.fetchone()
    return _ENDPOINT_HEALTH.read(row, 0) if row else None


@dataclass(frozen=True, slots=True)
class AttemptReport:
    """How an attempt ended (its start was recorded by the claim)."""

    duration_ms: int
    outcome: str
    response_status: int | None
    response_snippet: str | None
    error: str | None


async def record_attempt(
    connection: Connection, delivery: DueDelivery, attempt: AttemptReport, verdict: AttemptVerdict
) -> bool:
    """Write the attempt's outcome, the delivery's new state and the endpoint's streak. False when the lease had
    already run out and another worker took the delivery over (the attempt's outcome is still recorded: the log
    then shows what became of it instead of `interrupted`)."""
    pending = verdict.status is DeliveryStatus.PENDING
    params = {
        "delivery": delivery.id,
        "webhook": delivery.webhook_id,
        "attempt": delivery.attempt_number,
        "duration": attempt.duration_ms,
        "outcome": attempt.outcome,
        "response_status": attempt.response_status,
        "snippet": attempt.response_snippet,
        "error": attempt.error,
        "status": verdict.status.value,
        "delay": verdict.retry_in_seconds if pending else None,
        "succeeded": verdict.status is DeliveryStatus.SUCCEEDED,
        "counts": verdict.counts_as_failure,
    }
    cursor = await connection.execute(
        """
        WITH attempt AS (
            -- The row the claim wrote; an outcome once recorded is never overwritten. One marked interrupted was
            -- taken over by the next claim, which this no longer reschedules: it keeps the claim's end as its next.
            -- started_at becomes the send's start as the worker timed it (now less the duration): the claim
            -- wrote its own transaction's time, earlier by the claim's durable commit, and a retry is scheduled
            -- from the attempt's end, so the log reads end + delay = next_attempt_at.
            UPDATE webhook_attempt SET duration_ms = %(duration)s, outcome = %(outcome)s,
                   started_at = CASE WHEN outcome = 'in_progress'
                                     THEN greatest(started_at, now() - make_interval(secs => %(duration)s / 1000.0))
                                     ELSE started_at END,
                   response_status = %(response_status)s, response_snippet = %(snippet)s, error = %(error)s,
                   next_attempt_at = CASE WHEN outcome = 'in_progress' THEN now() + make_interval(secs => %(delay)s)
                                          ELSE next_attempt_at END
             WHERE delivery_id = %(delivery)s AND attempt_number = %(attempt)s
               AND outcome IN ('in_progress', 'interrupted')
        ), endpoint AS (
            UPDATE webhook SET
                   failure_count = CASE WHEN %(succeeded)s THEN 0
                                        WHEN %(counts)s THEN failure_count + 1 ELSE failure_count END,
                   failing_since = CASE WHEN %(succeeded)s THEN NULL
                                        WHEN %(counts)s THEN coalesce(failing_since, now()) ELSE failing_since END,
                   last_triggered_at = CASE WHEN %(succeeded)s THEN now() ELSE last_triggered_at END
             WHERE id = %(webhook)s
        )
        UPDATE webhook_delivery SET status = %(status)s,
               next_attempt_at = now() + make_interval(secs => %(delay)s),
               completed_at = CASE WHEN %(status)s = 'pending' THEN NULL ELSE now() END
         WHERE id = %(delivery)s AND attempt_count = %(attempt)s AND status = 'pending'
        """,
        params,
    )
    return cursor.rowcount == 1


class DisabledEndpoint(NamedTuple):
    owner_agent_id: int
    task_id: int | None  # set when the endpoint is a task's callback
    task_metadata: dict[str, Any] | None  # that task's metadata, echoed to its poster's side


async def disable_endpoint(connection: Connection, webhook_id: int, reason: str) -> DisabledEndpoint:
    """Switch the endpoint off; its pending deliveries fail (kept for redelivery). Returns whose it was."""
    async with connection.pipeline():
        cursor = await connection.execute(
            """UPDATE webhook SET is_active = false, disabled_at = now(), disabled_reason = %s
                WHERE id = %s
            RETURNING agent_id, task_id, (SELECT t.metadata FROM task t WHERE t.id = webhook.task_id)""",
            (reason, webhook_id),
        )
        await connection.execute(
            """UPDATE webhook_delivery SET status = 'failed', next_attempt_at = NULL, completed_at = now()
                WHERE webhook_id = %s AND status = 'pending'""",
            (webhook_id,),
        )
        agent_id, task_id, metadata = await one_row(cursor)
    return DisabledEndpoint(int(agent_id), task_id, metadata)
