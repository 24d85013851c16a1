"""The outbox: which events each marketplace change writes, to whom, atomically with the change, and the trigger
that fans events out into webhook deliveries.

Events are read straight from the `event` table on the test's connection. A recipient is `agent_id`; NULL is the
task's public stream. A shared `task.new_match` (one row for every agent it reaches) is read as each agent's stream
reads it, and counts once per agent it reaches. Every check looks only at rows written after a mark taken just
before the action.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from app.repo import deliveries as delivery_rows
from app.repo import events as event_rows
from tests.conftest import add_agent, bearer, new_agent

TASKS = "/api/v1/tasks"
WEBHOOKS = "/api/v1/webhooks"
PUBLIC_URL = "https://93.184.216.34/hook"
TASK = {
    "title": "Parse invoices",
    "description": "Extract totals from a batch of PDF invoices.",
    "budget_credits": 200,
}
PUBLIC = None  # the recipient of a task's public status


@dataclass(frozen=True)
class Row:
    id: int
    type: str
    agent_id: int | None
    task_id: int | None
    data: dict[str, Any]


# Marketplace helpers -----------------------------------------------------------------------------------------------


async def new_operator(client, admin_key: str, name: str) -> dict:
    response = await client.post("/api/v1/admin/operators", json={"name": name}, headers=bearer(admin_key))
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def post_task(client, agent: dict, **fields) -> dict:
    response = await client.post(TASKS, json={**TASK, **fields}, headers=bearer(agent["api_key"]))
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def bid(client, agent: dict, task_id: int, credits: int = 150) -> dict:
    response = await client.post(
        f"{TASKS}/{task_id}/claims", json={"proposed_credits": credits}, headers=bearer(agent["api_key"])
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def accept_bid(client, poster: dict, task_id: int, claim_id: int):
    return await client.post(f"{TASKS}/{task_id}/claims/{claim_id}/accept", headers=bearer(poster["api_key"]))


async def assign(client, poster: dict, worker: dict, task_id: int, price: int = 150) -> dict:
    claim = await bid(client, worker, task_id, price)
    accepted = await accept_bid(client, poster, task_id, claim["id"])
    assert accepted.status_code == 200, accepted.text
    return claim


async def deliver(client, worker: dict, task_id: int) -> dict:
    response = await client.post(
        f"{TASKS}/{task_id}/deliverables", json={"content": "the work"}, headers=bearer(worker["api_key"])
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def call(client, agent: dict, path: str, body: dict | None = None, status: int = 200):
    response = await client.post(path, json=body, headers=bearer(agent["api_key"]))
    assert response.status_code == status, response.text
    return response


async def pause(client, agent: dict) -> None:
    operator = agent["operator"]
    await call(client, {"api_key": operator["api_key"]}, f"/api/v1/operator/agents/{agent['id']}/pause")


async def suspend(client, admin_key: str, agent: dict) -> None:
    await call(client, {"api_key": admin_key}, f"/api/v1/admin/agents/{agent['id']}/suspend")


async def register_webhook(client, agent: dict, events: list[str]) -> dict:
    response = await client.post(WEBHOOKS, json={"url": PUBLIC_URL, "events": events}, headers=bearer(agent["api_key"]))
    assert response.status_code == 201, response.text
    return response.json()["data"]


# Outbox helpers ----------------------------------------------------------------------------------------------------


async def scalar(conn: psycopg.AsyncConnection, sql: str, *params: object) -> Any:
    cursor = await conn.execute(sql, params)
    return (await cursor.fetchone())[0]


async def mark(conn: psycopg.AsyncConnection) -> int:
    return await scalar(conn, "SELECT coalesce(max(id), 0) FROM event")


async def all_readable(conn: psycopg.AsyncConnection) -> None:
    """Wait until streams can read every committed event: a transaction still running anywhere on the server (the
    test databases' cloner creating the next one) holds readers back while it runs."""
    for _ in range(500):
        if not await event_rows.unreadable_exist(conn, event_rows.ORIGIN):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("committed events stayed unreadable for 5 s")


async def since(conn: psycopg.AsyncConnection, after: int, *, task_id: int | None = None) -> list[Row]:
    """The events written after `after`, a shared match once per agent whose own events include it (read as that
    agent's stream reads them)."""
    cursor = await conn.execute(
        f"""SELECT id, type, agent_id, task_id, data FROM event
             WHERE id > %s AND (%s::bigint IS NULL OR task_id = %s) AND NOT ({event_rows.SHARED_MATCH}) ORDER BY id""",
        (after, task_id, task_id),
    )
    found = [Row(*row) for row in await cursor.fetchall()]
    await all_readable(conn)
    cursor = await conn.execute("SELECT id FROM agent ORDER BY id")
    for (agent_id,) in await cursor.fetchall():
        for event in await event_rows.readable_after(conn, event_rows.ORIGIN, limit=100_000, agent_id=agent_id):
            if event.agent_id is None and event.id > after and task_id in (None, event.task_id):
                found.append(Row(event.id, event.type, agent_id, event.task_id, json.loads(event.data)))
    return sorted(found, key=lambda r: (r.id, r.agent_id or 0))


def recipients(rows: list[Row], event_type: str) -> Counter:
    """How many events of this type each recipient got (None: the public stream)."""
    return Counter(r.agent_id for r in rows if r.type == event_type)


def kinds(rows: list[Row]) -> Counter:
    return Counter((r.type, r.agent_id) for r in rows)


def only(rows: list[Row], event_type: str, agent_id: int | None) -> Row:
    found = [r for r in rows if r.type == event_type and r.agent_id == agent_id]
    assert len(found) == 1, (event_type, agent_id, rows)
    return found[0]


def error_code(response) -> str:
    body = response.json()
    assert body["ok"] is False, response.text
    return body["error"]["code"]


@pytest.fixture
async def rival(client, admin_key) -> dict:
    return await new_agent(client, admin_key, "rival")


# Posting a task ----------------------------------------------------------------------------------------------------


async def test_posting_writes_public_status_created_and_escrow_credit_events(client, conn, poster):
    sibling = await add_agent(client, poster["operator"], "sibling")
    before = await mark(conn)
    task = await post_task(client, poster)
    rows = await since(conn, before)
    assert {r.task_id for r in rows} == {task["id"]}
    # The public status of a new task.
    public = only(rows, "task.status", PUBLIC)
    assert public.data | {"updated_at": None} == {
        "task_id": task["id"],
        "title": TASK["title"],
        "status": "open",
        "previous_status": None,
        "claimed_by_agent_id": None,
        "updated_at": None,
    }
    assert public.data["updated_at"]
    assert recipients(rows, "task.status") == Counter({PUBLIC: 1})
    # task.created to the poster only.
    created = only(rows, "task.created", poster["id"])
    assert created.data == {
        "task_id": task["id"],
        "title": TASK["title"],
        "budget_credits": 200,
        "category_id": None,
    }
    assert recipients(rows, "task.created") == Counter({poster["id"]: 1})
    # credit.posted (escrow) to every agent of the poster's operator, and only to them.
    assert recipients(rows, "credit.posted") == Counter({poster["id"]: 1, sibling["id"]: 1})
    for agent in (poster, sibling):
        credit = only(rows, "credit.posted", agent["id"])
        assert credit.data["type"] == "escrow" and credit.data["amount"] == -200
        assert credit.data["task_id"] == task["id"] and credit.data["balance_after"] == 700 - 200
    assert set(Counter(r.type for r in rows)) <= {"task.status", "task.created", "credit.posted", "task.new_match"}


async def test_new_match_goes_to_matching_active_agents_of_other_operators(client, conn, admin_key, poster):
    # The poster's own operator: matching, but never told.
    sibling = await add_agent(client, poster["operator"], "sibling", capabilities=["invoices"], category_ids=[1])
    elsewhere = await new_operator(client, admin_key, "elsewhere")
    by_category = await add_agent(client, elsewhere, "by-category", category_ids=[3, 1])
    by_capability = await add_agent(client, elsewhere, "by-capability", capabilities=["cooking", "INVOICES"])
    by_title_case = await new_agent(client, admin_key, "third", capabilities=["pArSe"])
    near_miss = await add_agent(client, elsewhere, "near-miss", capabilities=["invoice", "parse invoices"])
    unrelated = await add_agent(client, elsewhere, "unrelated", capabilities=["cooking"], category_ids=[2])
    paused = await add_agent(client, elsewhere, "paused", capabilities=["invoices"], category_ids=[1])
    suspended = await add_agent(client, elsewhere, "suspended", capabilities=["invoices"], category_ids=[1])
    await pause(client, paused)
    await suspend(client, admin_key, suspended)
    everyone = (sibling, by_category, by_capability, by_title_case, near_miss, unrelated, paused, suspended, poster)
    ours = {a["id"] for a in everyone}

    before = await mark(conn)
    task = await post_task(client, poster, category_id=1)
    rows = await since(conn, before)
    matched = recipients(rows, "task.new_match")
    assert {a for a in matched if a in ours} == {by_category["id"], by_capability["id"], by_title_case["id"]}
    assert all(n == 1 for n in matched.values())
    event = only(rows, "task.new_match", by_category["id"])
    assert event.task_id == task["id"]
    assert event.data == {"task_id": task["id"], "title": TASK["title"], "budget_credits": 200, "category_id": 1}
    # Whoever else in the database got it (agents committed by other suites) matches the rule too.
    wrong = await scalar(
        conn,
        """SELECT count(*) FROM agent a
            WHERE a.id = ANY (%s)
              AND NOT (a.status = 'active' AND a.operator_id <> %s
                       AND (1 = ANY (a.category_ids)
                            OR EXISTS (SELECT 1 FROM unnest(a.capabilities) c
                                        WHERE lower(c) IN ('parse', 'invoices'))))""",
        list(matched),
        poster["operator"]["id"],
    )
    assert wrong == 0


async def test_new_match_without_a_category_matches_on_title_words_only(client, conn, admin_key, poster):
    by_category = await new_agent(client, admin_key, "cat", category_ids=[1])
    by_word = await new_agent(client, admin_key, "word", capabilities=["python"])
    before = await mark(conn)
    await post_task(client, poster, title="Write a Python script")
    matched = recipients(await since(conn, before), "task.new_match")
    assert by_word["id"] in matched and by_category["id"] not in matched


# Bids --------------------------------------------------------------------------------------------------------------


async def test_a_bid_tells_the_poster_and_a_withdrawal_too(client, conn, poster, worker):
    task = await post_task(client, poster)
    before = await mark(conn)
    claim = await bid(client, worker, task["id"], 120)
    rows = await since(conn, before)
    assert kinds(rows) == Counter({("claim.created", poster["id"]): 1})
    assert rows[0].task_id == task["id"]
    assert rows[0].data == {
        "task_id": task["id"],
        "claim_id": claim["id"],
        "agent_id": worker["id"],
        "proposed_credits": 120,
    }
    before = await mark(conn)
    await call(client, worker, f"{TASKS}/{task['id']}/claims/{claim['id']}/withdraw")
    rows = await since(conn, before)
    assert kinds(rows) == Counter({("claim.withdrawn", poster["id"]): 1})
    assert rows[0].data == {"task_id": task["id"], "claim_id": claim["id"], "agent_id": worker["id"]}


async def test_accepting_a_bid_tells_the_winner_and_rejects_each_loser(client, conn, poster, worker, rival, admin_key):
    third = await new_agent(client, admin_key, "third")
    task = await post_task(client, poster)
    won = await bid(client, worker, task["id"], 150)
    lost = {rival["id"]: await bid(client, rival, task["id"], 140), third["id"]: await bid(client, third, task["id"])}
    before = await mark(conn)
    assert (await accept_bid(client, poster, task["id"], won["id"])).status_code == 200
    rows = await since(conn, before)
    assert {r.task_id for r in rows} == {task["id"]}
    assert kinds(rows) == Counter(
        {
            ("task.status", PUBLIC): 1,
            ("task.status", poster["id"]): 1,
            ("task.status", worker["id"]): 1,
            ("claim.accepted", worker["id"]): 1,
            ("claim.rejected", rival["id"]): 1,
            ("claim.rejected", third["id"]): 1,
        }
    )
    for status in (r for r in rows if r.type == "task.status"):
        assert status.data["status"] == "claimed" and status.data["previous_status"] == "open"
        assert status.data["claimed_by_agent_id"] == worker["id"] and status.data["updated_at"]
    accepted = only(rows, "claim.accepted", worker["id"])
    assert accepted.data == {
        "task_id": task["id"],
        "claim_id": won["id"],
        "agent_id": worker["id"],
        "price_credits": 150,
    }
    for agent_id, claim in lost.items():
        rejected = only(rows, "claim.rejected", agent_id)
        assert rejected.data == {"task_id": task["id"], "claim_id": claim["id"], "reason": "another bid was accepted"}


async def test_bulk_bids_write_events_for_the_successes_only(client, conn, poster, worker):
    tasks = [await post_task(client, poster, title=f"Bulk {n}") for n in range(2)]
    before = await mark(conn)
    response = await client.post(
        f"{TASKS}/bulk/claims",
        json={
            "claims": [
                {"task_id": tasks[0]["id"], "proposed_credits": 10},
                {"task_id": 999999999, "proposed_credits": 10},
                {"task_id": tasks[0]["id"], "proposed_credits": 20},
                {"task_id": tasks[1]["id"], "proposed_credits": 30},
            ]
        },
        headers=bearer(worker["api_key"]),
    )
    assert response.status_code == 200, response.text
    assert [r["ok"] for r in response.json()["data"]["results"]] == [True, False, False, True]
    rows = await since(conn, before)
    assert kinds(rows) == Counter({("claim.created", poster["id"]): 2})
    assert [(r.task_id, r.data["proposed_credits"]) for r in rows] == [(tasks[0]["id"], 10), (tasks[1]["id"], 30)]


# Deliverables ------------------------------------------------------------------------------------------------------


async def test_deliver_revise_and_accept_write_their_events(client, conn, poster, worker):
    worker_sibling = await add_agent(client, worker["operator"], "worker-sibling")
    poster_sibling = await add_agent(client, poster["operator"], "poster-sibling")
    task = await post_task(client, poster)
    await assign(client, poster, worker, task["id"], 150)

    before = await mark(conn)
    first = await deliver(client, worker, task["id"])
    rows = await since(conn, before)
    assert kinds(rows) == Counter(
        {
            ("task.status", PUBLIC): 1,
            ("task.status", poster["id"]): 1,
            ("task.status", worker["id"]): 1,
            ("deliverable.submitted", poster["id"]): 1,
        }
    )
    assert {r.data["status"] for r in rows if r.type == "task.status"} == {"delivered"}
    assert only(rows, "deliverable.submitted", poster["id"]).data == {
        "task_id": task["id"],
        "deliverable_id": first["id"],
        "agent_id": worker["id"],
        "revision_number": 1,
    }

    before = await mark(conn)
    await call(client, poster, f"{TASKS}/{task['id']}/deliverables/{first['id']}/revision", {"revision_notes": "more"})
    rows = await since(conn, before)
    assert kinds(rows) == Counter(
        {
            ("task.status", PUBLIC): 1,
            ("task.status", poster["id"]): 1,
            ("task.status", worker["id"]): 1,
            ("deliverable.revision_requested", worker["id"]): 1,
        }
    )
    assert {r.data["status"] for r in rows if r.type == "task.status"} == {"in_progress"}
    assert only(rows, "deliverable.revision_requested", worker["id"]).data == {
        "task_id": task["id"],
        "deliverable_id": first["id"],
        "revision_notes": "more",
    }

    second = await deliver(client, worker, task["id"])
    assert only(await since(conn, before), "deliverable.submitted", poster["id"]).data["revision_number"] == 2
    before = await mark(conn)
    await call(client, poster, f"{TASKS}/{task['id']}/deliverables/{second['id']}/accept")
    rows = await since(conn, before)
    assert {r.task_id for r in rows} == {task["id"]}
    assert kinds(rows) == Counter(
        {
            ("task.status", PUBLIC): 1,
            ("task.status", poster["id"]): 1,
            ("task.status", worker["id"]): 1,
            ("deliverable.accepted", worker["id"]): 1,
            ("credit.posted", worker["id"]): 1,
            ("credit.posted", worker_sibling["id"]): 1,
            ("credit.posted", poster["id"]): 1,
            ("credit.posted", poster_sibling["id"]): 1,
        }
    )
    statuses = [r.data for r in rows if r.type == "task.status"]
    assert {(s["status"], s["previous_status"]) for s in statuses} == {("completed", "delivered")}
    # price 150: fee floor(15) = 15, the worker gets 135, the poster 50 back.
    assert only(rows, "deliverable.accepted", worker["id"]).data == {
        "task_id": task["id"],
        "deliverable_id": second["id"],
        "credits_paid": 135,
        "platform_fee": 15,
    }
    for agent in (worker, worker_sibling):
        credit = only(rows, "credit.posted", agent["id"]).data
        assert credit["type"] == "payment" and credit["amount"] == 135 and credit["task_id"] == task["id"]
    for agent in (poster, poster_sibling):
        credit = only(rows, "credit.posted", agent["id"]).data
        assert credit["amount"] == 50 and credit["task_id"] == task["id"]


async def test_a_settlement_at_the_full_budget_tells_the_poster_of_no_zero_credit(client, conn, poster, worker):
    task = await post_task(client, poster)
    await assign(client, poster, worker, task["id"], 200)
    done = await deliver(client, worker, task["id"])
    before = await mark(conn)
    await call(client, poster, f"{TASKS}/{task['id']}/deliverables/{done['id']}/accept")
    rows = await since(conn, before)
    assert recipients(rows, "credit.posted") == Counter({worker["id"]: 1})
    assert only(rows, "credit.posted", worker["id"]).data["amount"] == 180
    assert only(rows, "deliverable.accepted", worker["id"]).data["credits_paid"] == 180


# Cancel and rollback -----------------------------------------------------------------------------------------------


async def test_cancelling_an_open_task_rejects_every_pending_bid(client, conn, admin_key, poster, worker, rival):
    task = await post_task(client, poster)
    bids = {worker["id"]: await bid(client, worker, task["id"]), rival["id"]: await bid(client, rival, task["id"])}
    quitter = await new_agent(client, admin_key, "quitter")
    gone = await bid(client, quitter, task["id"])
    await call(client, quitter, f"{TASKS}/{task['id']}/claims/{gone['id']}/withdraw")
    before = await mark(conn)
    await call(client, poster, f"{TASKS}/{task['id']}/cancel")
    rows = await since(conn, before)
    assert recipients(rows, "task.cancelled") == Counter({poster["id"]: 1})
    assert only(rows, "task.cancelled", poster["id"]).data == {
        "task_id": task["id"],
        "previous_status": "open",
        "refunded_credits": 200,
    }
    # A bid withdrawn before the cancel is not rejected again.
    assert recipients(rows, "claim.rejected") == Counter({worker["id"]: 1, rival["id"]: 1})
    for agent_id, claim in bids.items():
        rejected = only(rows, "claim.rejected", agent_id).data
        assert rejected == {"task_id": task["id"], "claim_id": claim["id"], "reason": "the task was cancelled"}
    assert recipients(rows, "task.status") == Counter({PUBLIC: 1, poster["id"]: 1})
    assert {r.data["status"] for r in rows if r.type == "task.status"} == {"cancelled"}
    refund = only(rows, "credit.posted", poster["id"]).data
    assert refund["type"] == "refund" and refund["amount"] == 200
    assert recipients(rows, "credit.posted") == Counter({poster["id"]: 1})


async def test_cancelling_a_claimed_task_tells_the_worker(client, conn, poster, worker):
    task = await post_task(client, poster)
    claim = await assign(client, poster, worker, task["id"])
    before = await mark(conn)
    await call(client, poster, f"{TASKS}/{task['id']}/cancel")
    rows = await since(conn, before)
    assert recipients(rows, "task.cancelled") == Counter({poster["id"]: 1, worker["id"]: 1})
    assert only(rows, "task.cancelled", worker["id"]).data["previous_status"] == "claimed"
    assert recipients(rows, "claim.rejected") == Counter({worker["id"]: 1})
    assert only(rows, "claim.rejected", worker["id"]).data == {
        "task_id": task["id"],
        "claim_id": claim["id"],
        "reason": "the task was cancelled",
    }
    assert recipients(rows, "task.status") == Counter({PUBLIC: 1, poster["id"]: 1, worker["id"]: 1})


async def test_a_rollback_tells_poster_and_displaced_worker(client, conn, poster, worker, rival):
    task = await post_task(client, poster)
    await bid(client, rival, task["id"])  # rejected at the accept: the rollback does not reject it again
    claim = await assign(client, poster, worker, task["id"])
    before = await mark(conn)
    await call(client, poster, f"{TASKS}/{task['id']}/rollback")
    rows = await since(conn, before)
    assert kinds(rows) == Counter(
        {
            ("task.status", PUBLIC): 1,
            ("task.status", poster["id"]): 1,
            ("task.status", worker["id"]): 1,
            ("task.rolled_back", poster["id"]): 1,
            ("task.rolled_back", worker["id"]): 1,
            ("claim.rejected", worker["id"]): 1,
        }
    )
    rolled = only(rows, "task.rolled_back", poster["id"]).data
    assert rolled == {"task_id": task["id"], "previous_status": "claimed", "previous_agent_id": worker["id"]}
    assert only(rows, "claim.rejected", worker["id"]).data == {
        "task_id": task["id"],
        "claim_id": claim["id"],
        "reason": "the task was rolled back",
    }
    public = only(rows, "task.status", PUBLIC).data
    assert public["status"] == "open" and public["previous_status"] == "claimed"
    assert public["claimed_by_agent_id"] is None


# Atomicity (WH-13, in process) -------------------------------------------------------------------------------------


async def event_count(conn: psycopg.AsyncConnection) -> tuple[int, int]:
    cursor = await conn.execute("SELECT coalesce(max(id), 0), count(*) FROM event")
    return tuple(await cursor.fetchone())


async def test_a_post_refused_for_insufficient_credits_writes_no_event(client, conn, poster):
    before = await event_count(conn)
    for headers in ({}, {"Idempotency-Key": "broke-1"}):
        response = await client.post(
            TASKS, json={**TASK, "budget_credits": 100_000}, headers={**bearer(poster["api_key"]), **headers}
        )
        assert response.status_code == 422 and error_code(response) == "INSUFFICIENT_CREDITS"
    assert await event_count(conn) == before
    assert await scalar(conn, "SELECT count(*) FROM task WHERE poster_agent_id = %s", poster["id"]) == 0


async def test_refused_bids_and_accepts_write_no_event(client, conn, poster, worker, rival):
    task = await post_task(client, poster)
    won = await bid(client, worker, task["id"])
    lost = await bid(client, rival, task["id"])
    assert (await accept_bid(client, poster, task["id"], won["id"])).status_code == 200
    before = await event_count(conn)
    refused = [
        await accept_bid(client, poster, task["id"], won["id"]),  # already accepted
        await accept_bid(client, poster, task["id"], lost["id"]),  # the task is no longer open
        await client.post(
            f"{TASKS}/999999999/claims", json={"proposed_credits": 5}, headers=bearer(rival["api_key"])
        ),  # no such task
        await client.post(
            f"{TASKS}/{task['id']}/claims", json={"proposed_credits": 5}, headers=bearer(rival["api_key"])
        ),  # not open
        await client.post(f"{TASKS}/{task['id']}/cancel", headers=bearer(worker["api_key"])),  # not the poster
        await client.post(
            f"{TASKS}/{task['id']}/deliverables", json={"content": "x"}, headers=bearer(rival["api_key"])
        ),  # not the worker
    ]
    assert [r.status_code for r in refused] == [409, 409, 404, 409, 403, 403], [r.text for r in refused]
    assert await event_count(conn) == before


async def test_an_idempotent_replay_writes_no_second_set_of_events(client, conn, poster, worker):
    headers = {**bearer(poster["api_key"]), "Idempotency-Key": "post-once"}
    before = await mark(conn)
    first = await client.post(TASKS, json=TASK, headers=headers)
    assert first.status_code == 201, first.text
    written = await event_count(conn)
    assert len(await since(conn, before)) > 0
    replay = await client.post(TASKS, json=TASK, headers=headers)
    assert replay.status_code == 201 and replay.headers.get("idempotency-replayed") == "true"
    assert replay.json()["data"]["id"] == first.json()["data"]["id"]
    assert await event_count(conn) == written
    # The same for a bid.
    bid_headers = {**bearer(worker["api_key"]), "Idempotency-Key": "bid-once"}
    path = f"{TASKS}/{first.json()['data']['id']}/claims"
    assert (await client.post(path, json={"proposed_credits": 10}, headers=bid_headers)).status_code == 201
    written = await event_count(conn)
    assert (await client.post(path, json={"proposed_credits": 10}, headers=bid_headers)).status_code == 201
    assert await event_count(conn) == written


# Fan-out into webhook deliveries -----------------------------------------------------------------------------------


async def deliveries_of(conn: psycopg.AsyncConnection, webhook_id: int) -> list[tuple]:
    cursor = await conn.execute(
        "SELECT event_id, status, attempt_count FROM webhook_delivery WHERE webhook_id = %s ORDER BY id", (webhook_id,)
    )
    return await cursor.fetchall()


async def test_accepting_fans_out_to_the_winners_subscribed_active_webhook_only(client, conn, poster, worker, rival):
    subscribed = await register_webhook(client, worker, ["claim.accepted"])
    elsewhere = await register_webhook(client, worker, ["task.created", "claim.rejected"])
    switched_off = await register_webhook(client, worker, ["claim.accepted"])
    off = await client.patch(
        f"{WEBHOOKS}/{switched_off['id']}", json={"is_active": False}, headers=bearer(worker["api_key"])
    )
    assert off.status_code == 200, off.text
    losers_hook = await register_webhook(client, rival, ["claim.rejected", "claim.accepted"])
    task = await post_task(client, poster)
    won = await bid(client, worker, task["id"])
    lost = await bid(client, rival, task["id"])
    before = await mark(conn)
    assert (await accept_bid(client, poster, task["id"], won["id"])).status_code == 200
    rows = await since(conn, before)
    accepted = only(rows, "claim.accepted", worker["id"])
    assert await deliveries_of(conn, subscribed["id"]) == [(accepted.id, "pending", 0)]
    assert await deliveries_of(conn, elsewhere["id"]) == []
    assert await deliveries_of(conn, switched_off["id"]) == []
    # The loser's claim.rejected is written by a CTE in the rejecting statement: it fans out too.
    rejected = only(rows, "claim.rejected", rival["id"])
    assert rejected.data["claim_id"] == lost["id"]
    assert await deliveries_of(conn, losers_hook["id"]) == [(rejected.id, "pending", 0)]


async def test_credit_events_written_by_the_ledger_fan_out(client, conn, poster):
    hook = await register_webhook(client, poster, ["credit.posted"])
    before = await mark(conn)
    await post_task(client, poster)
    credit = only(await since(conn, before), "credit.posted", poster["id"])
    assert await deliveries_of(conn, hook["id"]) == [(credit.id, "pending", 0)]


async def test_every_subscribed_event_has_exactly_one_delivery_per_active_webhook(client, conn, admin_key):
    """A whole task's life with webhooks everywhere, then the anti-join both ways."""
    poster = await new_agent(client, admin_key, "poster", category_ids=[1])
    worker = await new_agent(client, admin_key, "worker", category_ids=[1])
    rival = await new_agent(client, admin_key, "rival", capabilities=["invoices"])
    everything = [
        "task.created", "task.new_match", "task.status", "task.cancelled", "task.rolled_back", "claim.created",
        "claim.accepted", "claim.rejected", "claim.withdrawn", "deliverable.submitted", "deliverable.accepted",
        "deliverable.revision_requested", "credit.posted",
    ]  # fmt: skip
    for agent in (poster, worker, rival):
        await register_webhook(client, agent, everything)
        await register_webhook(client, agent, ["task.status", "claim.rejected"])
    idle = await register_webhook(client, rival, everything)
    await client.patch(f"{WEBHOOKS}/{idle['id']}", json={"is_active": False}, headers=bearer(rival["api_key"]))
    before = await mark(conn)

    task = await post_task(client, poster, category_id=1)
    first = await bid(client, rival, task["id"])
    await call(client, rival, f"{TASKS}/{task['id']}/claims/{first['id']}/withdraw")
    await bid(client, rival, task["id"], 120)
    await assign(client, poster, worker, task["id"])
    await call(client, poster, f"{TASKS}/{task['id']}/rollback")
    await assign(client, poster, worker, task["id"], 160)
    done = await deliver(client, worker, task["id"])
    await call(client, poster, f"{TASKS}/{task['id']}/deliverables/{done['id']}/revision", {"revision_notes": "x"})
    done = await deliver(client, worker, task["id"])
    await call(client, poster, f"{TASKS}/{task['id']}/deliverables/{done['id']}/accept")
    other = await post_task(client, poster, title="Another one")
    await bid(client, rival, other["id"])
    await call(client, poster, f"{TASKS}/{other['id']}/cancel")

    # The worker's step that gives the shared task.new_match its deliveries, once it can read them.
    await all_readable(conn)
    await delivery_rows.fan_out_matches(conn, limit=100)
    written = await since(conn, before)
    assert {r.type for r in written} >= set(everything)
    # Each event's recipients: its agent, or for a shared match each agent it reaches (as `since` expands it).
    to = (
        [r.id for r in written if r.agent_id is not None],
        [r.agent_id for r in written if r.agent_id is not None],
    )
    missing = await scalar(
        conn,
        """SELECT count(*) FROM unnest(%s::bigint[], %s::bigint[]) AS r (event_id, agent_id)
             JOIN event e ON e.id = r.event_id
             JOIN webhook w ON w.agent_id = r.agent_id AND w.is_active AND e.type = ANY (w.events)
            WHERE NOT EXISTS (SELECT 1 FROM webhook_delivery d WHERE d.webhook_id = w.id AND d.event_id = e.id)""",
        *to,
    )
    assert missing == 0
    stray = await scalar(
        conn,
        """SELECT count(*) FROM webhook_delivery d JOIN event e ON e.id = d.event_id JOIN webhook w ON w.id = d.webhook_id
            WHERE e.id > %s AND NOT (w.is_active AND e.type = ANY (w.events)
                                     AND (e.id, w.agent_id) IN (SELECT * FROM unnest(%s::bigint[], %s::bigint[])))""",
        before,
        *to,
    )
    assert stray == 0
    doubled = await scalar(
        conn,
        """SELECT count(*) FROM (SELECT 1 FROM webhook_delivery d JOIN event e ON e.id = d.event_id
                                  WHERE e.id > %s GROUP BY d.webhook_id, d.event_id HAVING count(*) > 1) x""",
        before,
    )
    assert doubled == 0
    # And the totals agree: one delivery per (event, recipient's subscribed active webhook).
    expected = await scalar(
        conn,
        """SELECT count(*) FROM unnest(%s::bigint[], %s::bigint[]) AS r (event_id, agent_id)
             JOIN event e ON e.id = r.event_id
             JOIN webhook w ON w.agent_id = r.agent_id AND w.is_active AND e.type = ANY (w.events)""",
        *to,
    )
    actual = await scalar(
        conn, "SELECT count(*) FROM webhook_delivery d JOIN event e ON e.id = d.event_id WHERE e.id > %s", before
    )
    assert actual == expected > 0
    assert await deliveries_of(conn, idle["id"]) == []
    # The matches among them: the rival by its capability, the worker by its category, one delivery per webhook.
    matched = await scalar(
        conn,
        """SELECT count(*) FROM webhook_delivery d JOIN event e ON e.id = d.event_id
            WHERE e.id > %s AND e.type = 'task.new_match'""",
        before,
    )
    assert matched == 2  # the first task matches both, "Another one" neither; each has one webhook subscribed


# Immutability ------------------------------------------------------------------------------------------------------


async def test_events_cannot_be_updated(client, conn, poster):
    before = await mark(conn)
    await post_task(client, poster)
    row = (await since(conn, before))[0]
    with pytest.raises(psycopg.errors.RestrictViolation, match="events are immutable"):
        async with conn.transaction():
            await conn.execute("UPDATE event SET data = '{}'::jsonb WHERE id = %s", (row.id,))
    with pytest.raises(psycopg.errors.RestrictViolation):
        async with conn.transaction():
            await conn.execute("UPDATE event SET agent_id = NULL WHERE id > %s", (before,))
    # The shared transaction is still usable and the row is as written.
    assert (await since(conn, before))[0] == row
