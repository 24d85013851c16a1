"""The delivery log lists every attempt: the claim writes it `in_progress` as it starts, its end fills in the
outcome, and one whose end never came reads as `interrupted` once its claim has run out (issue 19).

These run the worker's repository and service calls on the test's own database, each committing as the worker's do:
a claim with a 0 s lease has run out the moment it is made, one with a long lease has not. The migration test
builds a database of its own at 0006 with the gaps the old worker left, and upgrades it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg
import pytest
from alembic import command

from app.repo import deliveries as delivery_rows
from app.repo import migrate
from app.repo.connections import SharedConnectionSource
from app.repo.deliveries import AttemptReport, DueDelivery
from app.services import deliveries
from domain.deliveries import AttemptVerdict, DeliveryStatus, DisablePolicy
from tests.conftest import bearer
from tests.support import sibling_database

WEBHOOKS = "/api/v1/webhooks"
POLICY = DisablePolicy(after_failures=1000, after_seconds=86400)


async def scalar(conn, sql: str, *params):
    cursor = await conn.execute(sql, params)
    return (await cursor.fetchone())[0]


async def queued_ping(client, agent: dict) -> tuple[int, int]:
    """A webhook of `agent` with one queued delivery: (webhook id, delivery id)."""
    created = await client.post(
        WEBHOOKS,
        json={"url": "https://93.184.216.34/hook", "events": ["claim.accepted"]},
        headers=bearer(agent["api_key"]),
    )
    assert created.status_code == 201, created.text
    webhook_id = created.json()["data"]["id"]
    pinged = await client.post(f"{WEBHOOKS}/{webhook_id}/test", headers=bearer(agent["api_key"]))
    assert pinged.status_code == 202, pinged.text
    return webhook_id, pinged.json()["data"]["id"]


async def claim(conn, delivery_id: int, lease_seconds: float) -> DueDelivery:
    """Claim what is due (other tests' leftovers too: rolled back with the test) and return this delivery's claim."""
    claimed = await delivery_rows.claim_due(conn, limit=50, per_endpoint=50, running={}, lease_seconds=lease_seconds)
    (mine,) = [d for d in claimed if d.id == delivery_id]
    return mine


async def finish(conn, delivery: DueDelivery, status: int | None, outcome: str, duration_ms: int = 42):
    report = AttemptReport(
        duration_ms=duration_ms,
        outcome=outcome,
        response_status=status,
        response_snippet="ok" if status else None,
        error=None if outcome == "succeeded" else f"HTTP {status}",
    )
    return await deliveries.finish_attempt(
        SharedConnectionSource(conn),
        delivery,
        report,
        succeeded=outcome == "succeeded",
        retry_after_seconds=None,
        policy=POLICY,
        scale=1.0,
    )


async def log_of(client, agent: dict, webhook_id: int, delivery_id: int) -> dict:
    response = await client.get(f"{WEBHOOKS}/{webhook_id}/deliveries", headers=bearer(agent["api_key"]))
    assert response.status_code == 200, response.text
    (delivery,) = [d for d in response.json()["data"] if d["id"] == delivery_id]
    assert delivery["attempt_count"] == len(delivery["attempts"]), delivery
    assert [a["attempt_number"] for a in delivery["attempts"]] == list(range(1, delivery["attempt_count"] + 1))
    return delivery


async def stored(conn, delivery_id: int) -> list[tuple]:
    cursor = await conn.execute(
        """SELECT attempt_number, outcome, now() - started_at BETWEEN '0 s' AND '10 s', duration_ms,
                  next_attempt_at - started_at
             FROM webhook_attempt WHERE delivery_id = %s ORDER BY attempt_number""",
        (delivery_id,),
    )
    return await cursor.fetchall()


async def test_the_claim_records_the_attempt_as_it_starts(client, conn, agent):
    webhook_id, delivery_id = await queued_ping(client, agent)
    due = await claim(conn, delivery_id, lease_seconds=60)
    assert due.attempt_number == 1
    # Started just now (the claim's time), no duration yet, due again when the claim ends: the delivery's lease end.
    assert await stored(conn, delivery_id) == [(1, "in_progress", True, None, timedelta(seconds=60))]
    lease_end = await scalar(conn, "SELECT next_attempt_at FROM webhook_delivery WHERE id = %s", delivery_id)
    assert await scalar(conn, "SELECT next_attempt_at FROM webhook_attempt WHERE delivery_id = %s", delivery_id) == (
        lease_end
    )

    listed = await log_of(client, agent, webhook_id, delivery_id)
    assert listed["status"] == "pending" and listed["attempt_count"] == 1
    (attempt,) = listed["attempts"]
    assert attempt["outcome"] == "in_progress" and attempt["started_at"] is not None
    assert attempt["duration_ms"] is None and attempt["response_status"] is None and attempt["error"] is None

    assert await finish(conn, due, 200, "succeeded") is not None
    # The outcome fills in the row the claim wrote: still one attempt, with its start kept.
    assert await stored(conn, delivery_id) == [(1, "succeeded", True, 42, None)]
    listed = await log_of(client, agent, webhook_id, delivery_id)
    assert listed["status"] == "succeeded"
    assert [(a["outcome"], a["response_status"], a["duration_ms"]) for a in listed["attempts"]] == [
        ("succeeded", 200, 42)
    ]


async def test_an_attempt_whose_claim_ran_out_reads_as_interrupted_and_the_next_claim_writes_it_so(client, conn, agent):
    webhook_id, delivery_id = await queued_ping(client, agent)
    await claim(conn, delivery_id, lease_seconds=0)  # its worker "dies": nothing more is written for attempt 1
    assert [row[1] for row in await stored(conn, delivery_id)] == ["in_progress"]
    listed = await log_of(client, agent, webhook_id, delivery_id)
    (attempt,) = listed["attempts"]
    assert listed["status"] == "pending" and attempt["outcome"] == "interrupted"
    assert attempt["started_at"] is not None and attempt["duration_ms"] is None
    assert attempt["next_attempt_at"] == listed["next_attempt_at"], "interrupted when the delivery fell due again"

    second = await claim(conn, delivery_id, lease_seconds=60)
    assert second.attempt_number == 2
    assert [row[:2] for row in await stored(conn, delivery_id)] == [(1, "interrupted"), (2, "in_progress")]
    listed = await log_of(client, agent, webhook_id, delivery_id)
    assert [a["outcome"] for a in listed["attempts"]] == ["interrupted", "in_progress"]

    await finish(conn, second, 200, "succeeded")
    listed = await log_of(client, agent, webhook_id, delivery_id)
    assert listed["status"] == "succeeded" and listed["attempt_count"] == 2
    assert [a["outcome"] for a in listed["attempts"]] == ["interrupted", "succeeded"]


async def test_a_claim_writes_down_every_earlier_attempt_left_in_progress_once_its_claim_ended(client, conn, agent):
    webhook_id, delivery_id = await queued_ping(client, agent)
    await claim(conn, delivery_id, lease_seconds=0)
    await claim(conn, delivery_id, lease_seconds=0)
    # As if attempt 1's row had been locked by a late recorder at the second claim (skipped), which then failed.
    await conn.execute(
        "UPDATE webhook_attempt SET outcome = 'in_progress' WHERE delivery_id = %s AND attempt_number = 1",
        (delivery_id,),
    )
    await claim(conn, delivery_id, lease_seconds=60)
    assert [row[:2] for row in await stored(conn, delivery_id)] == [
        (1, "interrupted"),
        (2, "interrupted"),
        (3, "in_progress"),
    ]
    listed = await log_of(client, agent, webhook_id, delivery_id)
    assert [a["outcome"] for a in listed["attempts"]] == ["interrupted", "interrupted", "in_progress"]


async def test_an_outcome_that_arrives_after_the_take_over_is_shown_but_reschedules_nothing(client, conn, agent):
    webhook_id, delivery_id = await queued_ping(client, agent)
    first = await claim(conn, delivery_id, lease_seconds=0)
    second = await claim(conn, delivery_id, lease_seconds=60)
    claim_end = await scalar(
        conn, "SELECT next_attempt_at FROM webhook_attempt WHERE delivery_id = %s AND attempt_number = 1", delivery_id
    )
    # The first worker was only slow: its 500 arrives now. It is what attempt 1 was; the delivery stays the second
    # worker's (still pending, its attempt running).
    await finish(conn, first, 500, "failed")
    assert await scalar(conn, "SELECT status FROM webhook_delivery WHERE id = %s", delivery_id) == "pending"
    rows = await stored(conn, delivery_id)
    assert [row[:2] for row in rows] == [(1, "failed"), (2, "in_progress")]
    assert (
        await scalar(
            conn,
            "SELECT next_attempt_at FROM webhook_attempt WHERE delivery_id = %s AND attempt_number = 1",
            delivery_id,
        )
        == claim_end
    ), "a late outcome keeps the claim's end as when the next attempt was due"
    listed = await log_of(client, agent, webhook_id, delivery_id)
    assert [(a["outcome"], a["response_status"]) for a in listed["attempts"]] == [
        ("failed", 500),
        ("in_progress", None),
    ]

    await finish(conn, second, 200, "succeeded")
    # A recorded outcome is never overwritten, not even by a second report of the same attempt.
    await finish(conn, first, 200, "succeeded")
    listed = await log_of(client, agent, webhook_id, delivery_id)
    assert [a["outcome"] for a in listed["attempts"]] == ["failed", "succeeded"]


async def test_the_database_keeps_the_attempt_log_whole(client, conn, agent):
    _, delivery_id = await queued_ping(client, agent)
    await claim(conn, delivery_id, lease_seconds=60)
    attempt = """INSERT INTO webhook_attempt (delivery_id, attempt_number, started_at, duration_ms, outcome)
                 VALUES (%s, %s, now(), %s, %s)"""
    refused = [
        ((delivery_id, 1, 5, "succeeded"), psycopg.errors.UniqueViolation),  # attempt 1 exists
        ((delivery_id, 2, None, "succeeded"), psycopg.errors.CheckViolation),  # an outcome has a duration
        ((delivery_id, 2, 5, "in_progress"), psycopg.errors.CheckViolation),  # no outcome, no duration
        ((delivery_id, 2, 5, "lost"), psycopg.errors.CheckViolation),
    ]
    for params, error in refused:
        with pytest.raises(error):
            async with conn.transaction():
                await conn.execute(attempt, params)
    with pytest.raises(psycopg.errors.CheckViolation):  # only an attempt without an outcome may lack its start
        async with conn.transaction():
            await conn.execute(
                """INSERT INTO webhook_attempt (delivery_id, attempt_number, duration_ms, outcome)
                   VALUES (%s, 2, 5, 'failed')""",
                (delivery_id,),
            )


# The migration ---------------------------------------------------------------------------------------------------

LEGACY = """
WITH op AS (INSERT INTO operator (name) VALUES ('legacy') RETURNING id),
     ag AS (INSERT INTO agent (operator_id, name, description) SELECT id, 'legacy-bot', 'bot' FROM op RETURNING id)
INSERT INTO webhook (agent_id, url, events, secret)
SELECT id, 'https://93.184.216.34/legacy', '{webhook.ping}', '\\x00'::bytea || convert_to('whsec_legacy', 'UTF8')
  FROM ag RETURNING id, agent_id
"""


async def legacy_delivery(conn, agent_id: int, webhook_id: int, status: str, count: int, due_in: str | None) -> int:
    """A delivery as the old worker left it (`due_in`: its next_attempt_at from now, for a pending one)."""
    await conn.execute(
        "INSERT INTO event (type, agent_id, data) VALUES ('webhook.ping', %s, jsonb_build_object('webhook_id', %s))",
        (agent_id, webhook_id),
    )
    delivery_id = await scalar(conn, "SELECT max(id) FROM webhook_delivery WHERE webhook_id = %s", webhook_id)
    await conn.execute(
        """UPDATE webhook_delivery SET status = %s, attempt_count = %s,
                  next_attempt_at = now() + %s::interval,
                  completed_at = CASE WHEN %s = 'pending' THEN NULL ELSE now() END
            WHERE id = %s""",
        (status, count, due_in, status, delivery_id),
    )
    return delivery_id


async def recorded_attempt(conn, delivery_id: int, number: int, outcome: str) -> None:
    await conn.execute(
        """INSERT INTO webhook_attempt (delivery_id, attempt_number, started_at, duration_ms, outcome, response_status)
           VALUES (%s, %s, now() - interval '1 hour', 12, %s, %s)""",
        (delivery_id, number, outcome, 200 if outcome == "succeeded" else 500),
    )


async def attempts(conn, delivery_id: int) -> list[tuple]:
    cursor = await conn.execute(
        """SELECT attempt_number, outcome, started_at IS NOT NULL, duration_ms,
                  coalesce(next_attempt_at = (SELECT next_attempt_at FROM webhook_delivery WHERE id = %s), false)
             FROM webhook_attempt WHERE delivery_id = %s ORDER BY attempt_number""",
        (delivery_id, delivery_id),
    )
    return await cursor.fetchall()


async def test_0007_fills_in_the_attempts_the_old_worker_never_recorded(database_url):
    url = sibling_database(database_url, "agora_attempt_log")
    migrate.upgrade(url, "0006")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        webhook_id, agent_id = await (await conn.execute(LEGACY)).fetchone()
        # Attempt 1 died with its worker, attempt 2 delivered.
        crashed_then_delivered = await legacy_delivery(conn, agent_id, webhook_id, "succeeded", 2, None)
        await recorded_attempt(conn, crashed_then_delivered, 2, "succeeded")
        # Attempt 1 failed; attempt 2's worker died and its lease has run out (due again).
        due_after_a_crash = await legacy_delivery(conn, agent_id, webhook_id, "pending", 2, "-1 minute")
        await recorded_attempt(conn, due_after_a_crash, 1, "failed")
        # Attempt 1 is being sent right now (its lease runs for another minute).
        in_flight = await legacy_delivery(conn, agent_id, webhook_id, "pending", 1, "1 minute")
        # Whole already, or never attempted.
        whole = await legacy_delivery(conn, agent_id, webhook_id, "succeeded", 1, None)
        await recorded_attempt(conn, whole, 1, "succeeded")
        untouched = await legacy_delivery(conn, agent_id, webhook_id, "pending", 0, "0 s")
    try:
        migrate.upgrade(url, "0007")
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            assert await attempts(conn, crashed_then_delivered) == [
                (1, "interrupted", False, None, False),
                (2, "succeeded", True, 12, False),
            ]
            assert await attempts(conn, due_after_a_crash) == [
                (1, "failed", True, 12, False),
                (2, "interrupted", False, None, False),
            ]
            # Still claimed: in progress until the lease ends (then it reads as interrupted).
            assert await attempts(conn, in_flight) == [(1, "in_progress", False, None, True)]
            assert await attempts(conn, whole) == [(1, "succeeded", True, 12, False)]
            assert await attempts(conn, untouched) == []
            mismatched = await scalar(
                conn,
                """SELECT count(*) FROM webhook_delivery d
                    WHERE d.attempt_count <> (SELECT count(*) FROM webhook_attempt a WHERE a.delivery_id = d.id)""",
            )
            assert mismatched == 0

        # Down: the attempts without an outcome go (the old schema cannot hold them); up again fills them in again.
        command.downgrade(migrate.alembic_config(url), "0006")
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            assert await scalar(conn, "SELECT count(*) FROM webhook_attempt") == 3
            assert (
                await scalar(
                    conn, "SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_webhook_attempt_delivery_id_id'"
                )
                == 1
            )
        migrate.upgrade(url, "0007")
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            assert [row[1] for row in await attempts(conn, crashed_then_delivered)] == ["interrupted", "succeeded"]
            assert await scalar(conn, "SELECT count(*) FROM webhook_attempt") == 6
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute('DROP DATABASE IF EXISTS "agora_attempt_log" WITH (FORCE)')


# A late record racing the next claim ---------------------------------------------------------------------------


async def test_a_claim_does_not_wait_for_a_late_worker_recording_the_previous_attempt(database_url):
    """A worker records attempt 1 after its claim ran out, just as another worker claims the delivery again. The
    recorder holds the attempt's row and will need the delivery's; the claim holds the delivery's row. Were the
    claim to wait for the attempt's row (to mark it interrupted), the two would deadlock: it skips it instead, and
    the recorder's outcome stands."""
    url = sibling_database(database_url, "agora_attempt_race")
    migrate.upgrade(url)
    try:
        async with (
            await psycopg.AsyncConnection.connect(url, autocommit=True) as claimer,
            await psycopg.AsyncConnection.connect(url, autocommit=True) as recorder,
        ):
            webhook_id, agent_id = await (await claimer.execute(LEGACY)).fetchone()
            delivery_id = await legacy_delivery(claimer, agent_id, webhook_id, "pending", 0, "0 s")
            (first,) = await delivery_rows.claim_due(claimer, limit=5, per_endpoint=5, running={}, lease_seconds=0)

            await recorder.execute("BEGIN")
            # What the late worker's record holds first: the endpoint's row, then its attempt's row.
            await delivery_rows.lock_endpoint(recorder, webhook_id)
            await recorder.execute(
                "SELECT 1 FROM webhook_attempt WHERE delivery_id = %s AND attempt_number = 1 FOR UPDATE", (delivery_id,)
            )
            async with asyncio.timeout(5):
                (second,) = await delivery_rows.claim_due(
                    claimer, limit=5, per_endpoint=5, running={}, lease_seconds=60
                )
            assert (second.id, second.attempt_number) == (delivery_id, 2)
            report = AttemptReport(
                duration_ms=30, outcome="failed", response_status=500, response_snippet=None, error="HTTP 500"
            )
            verdict = AttemptVerdict(DeliveryStatus.PENDING, 5.0, True, None)
            async with asyncio.timeout(5):
                taken_over = not await delivery_rows.record_attempt(recorder, first, report, verdict)
            await recorder.execute("COMMIT")
            assert taken_over

            rows = await (
                await claimer.execute(
                    "SELECT attempt_number, outcome, response_status FROM webhook_attempt WHERE delivery_id = %s"
                    " ORDER BY attempt_number",
                    (delivery_id,),
                )
            ).fetchall()
            assert rows == [(1, "failed", 500), (2, "in_progress", None)]
            state = await (
                await claimer.execute(
                    "SELECT status, attempt_count FROM webhook_delivery WHERE id = %s", (delivery_id,)
                )
            ).fetchone()
            assert state == ("pending", 2)
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute('DROP DATABASE IF EXISTS "agora_attempt_race" WITH (FORCE)')
