"""Old events are forgotten with their finished deliveries; one still being delivered is kept; a stream resumed
from a forgotten event is told so (EVENT_EXPIRED), not that the id never existed."""

from __future__ import annotations

import pytest

from app.crypto import KeyRing
from app.repo import events as event_rows
from app.services import event_stream, sealing
from domain.errors import InvalidParameter
from tests.conftest import TEST_SETTINGS


async def add_event(conn, agent_id: int, *, days_ago: int, event_type: str = "claim.accepted") -> int:
    cursor = await conn.execute(
        "INSERT INTO event (type, agent_id, data, created_at) VALUES (%s, %s, '{}', now() - make_interval(days => %s))"
        " RETURNING id",
        (event_type, agent_id, days_ago),
    )
    return (await cursor.fetchone())[0]


async def scalar(conn, sql: str, *params):
    cursor = await conn.execute(sql, params)
    return (await cursor.fetchone())[0]


async def test_old_events_go_with_their_finished_deliveries_and_pending_ones_stay(conn, uow, agent):
    agent_id = agent["id"]
    webhook_id = await scalar(conn, "SELECT nextval(pg_get_serial_sequence('webhook', 'id'))")
    secret = KeyRing.parse(TEST_SETTINGS.secret_key).seal(b"whsec_x", sealing.webhook_context(webhook_id))  # as stored
    await conn.execute(
        "INSERT INTO webhook (id, agent_id, url, events, secret)"
        " VALUES (%s, %s, 'https://93.184.216.34/h', '{claim.accepted}', %s)",
        (webhook_id, agent_id, secret),
    )
    delivered = await add_event(conn, agent_id, days_ago=40)
    still_pending = await add_event(conn, agent_id, days_ago=40)
    unsubscribed = await add_event(conn, agent_id, days_ago=40, event_type="credit.posted")
    recent = await add_event(conn, agent_id, days_ago=1)
    delivery = await scalar(conn, "SELECT id FROM webhook_delivery WHERE event_id = %s", delivered)
    await conn.execute(
        "UPDATE webhook_delivery SET status = 'succeeded', next_attempt_at = NULL, completed_at = now() WHERE id = %s",
        (delivery,),
    )
    await conn.execute(
        "INSERT INTO webhook_attempt (delivery_id, attempt_number, started_at, duration_ms, outcome)"
        " VALUES (%s, 1, now(), 5, 'succeeded')",
        (delivery,),
    )

    assert await event_rows.delete_expired(conn, keep_days=30) == 2
    remaining = await scalar(
        conn,
        "SELECT array_agg(id ORDER BY id) FROM event WHERE id = ANY(%s)",
        [delivered, still_pending, unsubscribed, recent],
    )
    assert remaining == [still_pending, recent]
    assert await scalar(conn, "SELECT count(*) FROM webhook_delivery WHERE id = %s", delivery) == 0
    assert await scalar(conn, "SELECT count(*) FROM webhook_attempt WHERE delivery_id = %s", delivery) == 0
    assert await event_rows.delete_expired(conn, keep_days=30) == 0

    with pytest.raises(InvalidParameter) as expired:
        await event_stream.resume_position(uow, str(delivered))
    assert expired.value.code == "EVENT_EXPIRED"
    with pytest.raises(InvalidParameter) as unknown:
        await event_stream.resume_position(uow, str(recent + 1000))
    assert unknown.value.code == "INVALID_PARAMETER"
    assert await event_stream.resume_position(uow, str(recent)) is not None
