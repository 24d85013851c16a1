"""`task.new_match` is fanned out on read: a post writes one event (and its criteria) however many agents it
matches; each agent's read, the event hub's read and the webhook fan-out resolve who it reaches, as they read it.
"""

from __future__ import annotations

import json

import psycopg
import pytest

from app.repo import deliveries as delivery_rows
from app.repo import events as event_rows
from tests.api.test_outbox_events import (
    TASK,
    accept_bid,
    all_readable,
    bid,
    deliveries_of,
    mark,
    new_operator,
    pause,
    post_task,
    recipients,
    register_webhook,
    scalar,
    since,
    suspend,
)
from tests.conftest import add_agent, bearer, new_agent

WORD = "quokkas"  # a capability nothing else in the test database names
TITLE = f"Count the {WORD} on the island"


async def shared_matches(conn, after: int) -> list[tuple]:
    cursor = await conn.execute(
        """SELECT e.id, e.agent_id, e.task_id, m.poster_operator_id, m.category_id, m.terms, m.tx = e.tx
             FROM event e LEFT JOIN event_match m ON m.event_id = e.id
            WHERE e.id > %s AND e.type = 'task.new_match' ORDER BY e.id""",
        (after,),
    )
    return await cursor.fetchall()


@pytest.mark.parametrize("matching", [1, 15])
async def test_a_post_writes_one_match_event_however_many_agents_it_matches(client, conn, admin_key, poster, matching):
    elsewhere = await new_operator(client, admin_key, "elsewhere")
    agents = [await add_agent(client, elsewhere, f"m{n}", capabilities=[WORD.upper()]) for n in range(matching)]
    before = await mark(conn)
    task = await post_task(client, poster, title=TITLE, category_id=2)
    ((event_id, agent_id, task_id, operator_id, category_id, terms, same_tx),) = await shared_matches(conn, before)
    assert (agent_id, task_id, operator_id, category_id) == (None, task["id"], poster["operator"]["id"], 2)
    assert terms == ["count", "the", WORD, "on", "island"] and same_tx
    # At commit the match has no delivery yet (the fan-out makes them), and reaches every matching agent.
    assert await scalar(conn, "SELECT count(*) FROM webhook_delivery WHERE event_id = %s", event_id) == 0
    matched = recipients(await since(conn, before), "task.new_match")
    assert set(matched) == {a["id"] for a in agents} and set(matched.values()) == {1}


async def test_the_public_task_stream_never_shows_the_match(client, conn, admin_key, poster):
    await new_agent(client, admin_key, "matching", capabilities=[WORD])
    task = await post_task(client, poster, title=TITLE)
    await all_readable(conn)
    public = await event_rows.readable_after(conn, event_rows.ORIGIN, limit=100, task_id=task["id"])
    assert [e.type for e in public] == ["task.status"]
    latest = await event_rows.latest_public(conn, task["id"])
    assert latest is not None and latest.type == "task.status"


async def test_each_agent_reads_the_matches_it_gets_in_position_order_with_its_own_events(
    client, conn, admin_key, poster
):
    agent = await new_agent(client, admin_key, "reader", capabilities=[WORD])
    first = await post_task(client, poster, title=TITLE)
    await post_task(client, poster, title="Nothing for the reader")
    claim = await bid(client, agent, first["id"], 120)
    assert (await accept_bid(client, poster, first["id"], claim["id"])).status_code == 200
    second = await post_task(client, poster, title=f"More {WORD}")
    await all_readable(conn)
    read = await event_rows.readable_after(conn, event_rows.ORIGIN, limit=100, agent_id=agent["id"])
    seen = [(e.type, e.task_id) for e in read if e.task_id is not None]
    assert seen == [
        ("task.new_match", first["id"]),
        ("task.status", first["id"]),
        ("claim.accepted", first["id"]),
        ("task.new_match", second["id"]),
    ]
    assert [e.position for e in read] == sorted(e.position for e in read)
    # Page by page, one event at a time from each position: the same events, nothing lost, nothing twice.
    paged, position = [], event_rows.ORIGIN
    while page := await event_rows.readable_after(conn, position, limit=1, agent_id=agent["id"]):
        paged += page
        position = page[-1].position
    assert paged == read
    # What each reader gets is the payload written, the same fields as before.
    match = read[[e.type for e in read].index("task.new_match")]
    assert match.agent_id is None
    assert json.loads(match.data) == {
        "task_id": first["id"],
        "title": TITLE,
        "budget_credits": TASK["budget_credits"],
        "category_id": None,
    }


async def test_the_hub_read_resolves_each_match_among_the_agents_listening(client, conn, admin_key, poster):
    sibling = await add_agent(client, poster["operator"], "sibling", capabilities=[WORD])
    matching = await new_agent(client, admin_key, "matching", capabilities=[WORD])
    by_category = await new_agent(client, admin_key, "by-category", category_ids=[3])
    paused = await new_agent(client, admin_key, "paused", capabilities=[WORD])
    suspended = await new_agent(client, admin_key, "suspended", capabilities=[WORD])
    unrelated = await new_agent(client, admin_key, "unrelated", capabilities=["cooking"])
    await pause(client, paused)
    await suspend(client, admin_key, suspended)
    start = await event_rows.head(conn)
    task = await post_task(client, poster, title=TITLE, category_id=3)
    await all_readable(conn)
    listening = [a["id"] for a in (sibling, matching, by_category, paused, suspended, unrelated, poster)]
    read = await event_rows.readable_after(conn, start, limit=100, among=listening)
    (match,) = [e for e in read if e.recipients is not None]
    assert match.type == "task.new_match" and match.task_id == task["id"]
    assert match.recipients == tuple(sorted((matching["id"], by_category["id"])))
    assert all(e.recipients is None for e in read if e is not match)
    # Nobody listening: still recognisably a shared match, reaching no one.
    (alone,) = [e for e in await event_rows.readable_after(conn, start, limit=100) if e.type == "task.new_match"]
    assert alone.recipients == ()


async def test_who_gets_a_match_is_decided_as_it_is_read(client, conn, admin_key, poster):
    """The task's side (poster's operator, category, title words) is fixed when it is posted; the agent's side
    (active, categories, capabilities) is the agent's row when a reader resolves the match."""
    leaves = await new_agent(client, admin_key, "leaves", capabilities=[WORD])
    joins = await new_agent(client, admin_key, "joins", capabilities=["cooking"])
    before = await mark(conn)
    await post_task(client, poster, title=TITLE)
    assert set(recipients(await since(conn, before), "task.new_match")) == {leaves["id"]}
    await pause(client, leaves)
    changed = await client.patch("/api/v1/agents/me", json={"capabilities": [WORD]}, headers=bearer(joins["api_key"]))
    assert changed.status_code == 200, changed.text
    assert set(recipients(await since(conn, before), "task.new_match")) == {joins["id"]}


async def test_the_fan_out_queues_one_delivery_per_subscribed_webhook_of_each_matching_agent_once(
    client, conn, admin_key, poster
):
    matching = await new_agent(client, admin_key, "matching", capabilities=[WORD])
    also = await new_agent(client, admin_key, "also", category_ids=[4])
    sibling = await add_agent(client, poster["operator"], "sibling", capabilities=[WORD])
    paused = await new_agent(client, admin_key, "paused", capabilities=[WORD])
    unrelated = await new_agent(client, admin_key, "unrelated", capabilities=["cooking"])
    hooks = {
        "matching": await register_webhook(client, matching, ["task.new_match", "claim.accepted"]),
        "matching, other events": await register_webhook(client, matching, ["task.created"]),
        "also": await register_webhook(client, also, ["task.new_match"]),
        "also, switched off": await register_webhook(client, also, ["task.new_match"]),
        "sibling": await register_webhook(client, sibling, ["task.new_match"]),
        "paused": await register_webhook(client, paused, ["task.new_match"]),
        "unrelated": await register_webhook(client, unrelated, ["task.new_match"]),
    }
    await pause(client, paused)  # after registering: a paused agent cannot
    off = await client.patch(
        f"/api/v1/webhooks/{hooks['also, switched off']['id']}",
        json={"is_active": False},
        headers=bearer(also["api_key"]),
    )
    assert off.status_code == 200, off.text
    before = await mark(conn)
    await post_task(client, poster, title=TITLE, category_id=4)
    await post_task(client, poster, title="Nobody's business")
    await all_readable(conn)
    first, second = [row[0] for row in await shared_matches(conn, before)]

    assert await delivery_rows.fan_out_matches(conn, limit=100) == (2, 2)
    got = {name: await deliveries_of(conn, hook["id"]) for name, hook in hooks.items()}
    assert got == {name: [(first, "pending", 0)] if name in ("matching", "also") else [] for name in hooks}
    cursor = await conn.execute("SELECT tx::text::bigint, event_id FROM match_fan_out")
    assert await cursor.fetchone() == await event_rows.position_of(conn, second)
    # Again: nothing new to fan out, nothing queued twice.
    assert await delivery_rows.fan_out_matches(conn, limit=100) == (0, 0)
    assert {name: await deliveries_of(conn, hook["id"]) for name, hook in hooks.items()} == got


async def test_the_fan_out_goes_in_batches_and_skips_while_another_worker_holds_the_cursor(
    client, conn, admin_key, poster, test_database
):
    matching = await new_agent(client, admin_key, "matching", capabilities=[WORD])
    hook = await register_webhook(client, matching, ["task.new_match"])
    for _ in range(3):
        await post_task(client, poster, title=TITLE)
    await all_readable(conn)
    async with await psycopg.AsyncConnection.connect(test_database) as other:
        await other.execute("SELECT 1 FROM match_fan_out FOR UPDATE")  # another worker's fan-out, uncommitted
        assert await delivery_rows.fan_out_matches(conn, limit=2) == (0, 0)
        await other.rollback()
    assert await delivery_rows.fan_out_matches(conn, limit=2) == (2, 2)
    assert await delivery_rows.fan_out_matches(conn, limit=2) == (1, 1)
    assert len(await deliveries_of(conn, hook["id"])) == 3


async def test_retention_keeps_a_match_until_it_is_fanned_out(client, conn, admin_key, poster):
    await new_agent(client, admin_key, "matching", capabilities=[WORD])
    before = await mark(conn)
    await post_task(client, poster, title=TITLE)
    ((event_id, *_),) = await shared_matches(conn, before)
    # Everything written so far is older than "0 days"; the match waits for the fan-out.
    await event_rows.delete_expired(conn, keep_days=0)
    assert await scalar(conn, "SELECT count(*) FROM event WHERE id = %s", event_id) == 1
    await all_readable(conn)
    await delivery_rows.fan_out_matches(conn, limit=100)
    await event_rows.delete_expired(conn, keep_days=0)
    assert await scalar(conn, "SELECT count(*) FROM event WHERE id = %s", event_id) == 0
    assert await scalar(conn, "SELECT count(*) FROM event_match WHERE event_id = %s", event_id) == 0
