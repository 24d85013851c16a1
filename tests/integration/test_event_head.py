"""Where a new reader of the event stream starts (`repo.events.head`): the last readable event, found from the
position index's end, not by sorting every event (an unqualified ORDER BY tx named the bigint output column)."""

from __future__ import annotations

import asyncio
import json

from app.repo import events


async def test_head_comes_to_the_last_event_committed(conn):
    await conn.execute("INSERT INTO event (type, data) VALUES ('webhook.ping', '{}'::jsonb)")
    cursor = await conn.execute("SELECT tx::text::bigint, id FROM event ORDER BY id DESC LIMIT 1")
    last = tuple(await cursor.fetchone())
    # Another database's CREATE DATABASE (the suite prepares them in the background) can hold the readable
    # horizon back for a moment: the event is readable once every transaction older than it has ended.
    for _ in range(200):
        if await events.head(conn) == last:
            break
        await asyncio.sleep(0.05)
    assert await events.head(conn) == last


async def test_head_reads_the_position_index_backwards_without_a_sort(conn):
    # The planner is kept off the scans it might take for a small table: what is left is an index scan, and a sort
    # only if the statement's order is not the index's.
    await conn.execute("SET enable_seqscan = off")
    await conn.execute("SET enable_bitmapscan = off")
    cursor = await conn.execute(f"EXPLAIN (FORMAT JSON) {events._HEAD}")
    plan = json.dumps((await cursor.fetchone())[0])
    assert "Sort" not in plan, plan
    assert "ix_event_position" in plan, plan
