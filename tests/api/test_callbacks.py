"""A task's callback (issue 13, Taskbox's `callback_url`): made with the task, its secret shown once, fed the task's
poster-side events by the outbox trigger, kept out of the agent's webhooks, and its delivery log and redelivery
open to the poster's operator only.

No delivery worker runs in process: what a callback receives is read from the deliveries queued for it (the live
test, tests/concurrency/test_callback_delivery_live.py, sends them). Callback URLs are public IP literals, so no DNS
lookup happens and nothing is ever connected to.
"""

from __future__ import annotations

import re

import psycopg
import pytest

from app.repo import deliveries as delivery_rows
from domain.events import SUBSCRIBABLE
from tests.api.test_outbox_events import TASK, accept_bid, all_readable, bid, deliver, register_webhook, scalar
from tests.api.test_webhooks_api import FORBIDDEN_URLS, error_code, finish, opened
from tests.conftest import add_agent, bearer, new_agent

TASKS = "/api/v1/tasks"
CALLBACK_URL = "https://93.184.216.34/agora/callback"
SECRET = re.compile(r"whsec_[0-9a-f]{48}")
METADATA = {"order": "PO-1138", "lines": [1, 2, 3], "nested": {"ok": True}}
MISSING = 999999999


async def post(client, agent: dict, headers: dict | None = None, **fields):
    return await client.post(TASKS, json={**TASK, **fields}, headers={**bearer(agent["api_key"]), **(headers or {})})


async def post_with_callback(client, agent: dict, **fields) -> dict:
    response = await post(client, agent, callback_url=CALLBACK_URL, **fields)
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def callback_of(conn: psycopg.AsyncConnection, task_id: int) -> tuple:
    cursor = await conn.execute(
        "SELECT id, agent_id, url, events, is_active, secret FROM webhook WHERE task_id = %s", (task_id,)
    )
    return await cursor.fetchone()


def log_path(task_id) -> str:
    return f"{TASKS}/{task_id}/callback-deliveries"


async def log(client, agent: dict, task_id, **params):
    return await client.get(log_path(task_id), params=params, headers=bearer(agent["api_key"]))


async def redeliver(client, agent: dict, task_id, delivery_id):
    return await client.post(f"{log_path(task_id)}/{delivery_id}/redeliver", headers=bearer(agent["api_key"]))


async def logged(client, agent: dict, task_id) -> list[dict]:
    """The whole log, oldest first."""
    response = await log(client, agent, task_id, limit=100)
    assert response.status_code == 200, response.text
    assert response.json()["meta"]["has_more"] is False
    return response.json()["data"][::-1]


async def delivered_events(conn: psycopg.AsyncConnection, webhook_id: int) -> list[tuple]:
    """(event id, type, agent, task, data) of every event queued to the endpoint, in event order."""
    cursor = await conn.execute(
        """SELECT e.id, e.type, e.agent_id, e.task_id, e.data FROM webhook_delivery d JOIN event e ON e.id = d.event_id
            WHERE d.webhook_id = %s ORDER BY e.id""",
        (webhook_id,),
    )
    return await cursor.fetchall()


async def plaintext_anywhere(conn: psycopg.AsyncConnection, secret: str) -> list[str]:
    """The tables one of whose rows shows `secret` as text or as the hex a dump writes bytea in (each row as its
    text form: every column, bytea included, as pg_dump would print it)."""
    cursor = await conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
    found = []
    for (table,) in await cursor.fetchall():
        hits = await scalar(
            conn,
            f'SELECT count(*) FROM "{table}" t WHERE strpos(t::text, %s) > 0 OR strpos(t::text, %s) > 0',
            secret,
            secret.encode().hex(),
        )
        if hits:
            found.append(table)
    return found


@pytest.fixture
async def other(client, admin_key) -> dict:
    """An agent of a third operator."""
    return await new_agent(client, admin_key, "other")


# POST /tasks with a callback_url -------------------------------------------------------------------------------------


async def test_posting_with_a_callback_url_answers_its_secret_and_makes_its_endpoint(client, conn, poster):
    response = await post(client, poster, callback_url=CALLBACK_URL, metadata=METADATA)
    assert response.status_code == 201, response.text
    task = response.json()["data"]
    assert SECRET.fullmatch(task["callback_secret"]), task["callback_secret"]
    assert task["callback_url"] == CALLBACK_URL and task["metadata"] == METADATA
    webhook_id, agent_id, url, events, is_active, stored = await callback_of(conn, task["id"])
    # The poster agent's endpoint for this task, subscribed to everything: the trigger narrows it to the task.
    assert (agent_id, url, events, is_active) == (poster["id"], CALLBACK_URL, list(SUBSCRIBABLE), True)
    # Sealed like a webhook secret, to its row (DESIGN §10).
    assert task["callback_secret"].encode() not in bytes(stored)
    assert opened(stored, webhook_id) == task["callback_secret"]


async def test_without_a_callback_url_there_is_no_secret_and_no_endpoint(client, conn, poster):
    response = await post(client, poster)
    assert response.status_code == 201, response.text
    task = response.json()["data"]
    assert task["callback_secret"] is None and task["callback_url"] is None
    assert await callback_of(conn, task["id"]) is None


async def test_each_task_gets_a_secret_of_its_own(client, poster):
    first = await post_with_callback(client, poster)
    second = await post_with_callback(client, poster)
    assert first["callback_secret"] != second["callback_secret"]


async def test_the_secret_is_shown_nowhere_else_and_is_not_in_the_database_in_plaintext(client, conn, poster, worker):
    task = await post_with_callback(client, poster, metadata=METADATA)
    secret = task["callback_secret"]
    sibling = await add_agent(client, poster["operator"], "sibling")
    reads = [
        await client.get(f"{TASKS}/{task['id']}", headers=bearer(poster["api_key"])),
        await client.get(f"{TASKS}/{task['id']}", headers=bearer(sibling["api_key"])),
        await client.get(f"{TASKS}/{task['id']}", headers=bearer(worker["api_key"])),
        await client.get(TASKS, headers=bearer(poster["api_key"])),
        await client.get("/api/v1/webhooks", headers=bearer(poster["api_key"])),
        await log(client, poster, task["id"]),
    ]
    for response in reads:
        assert response.status_code == 200, response.text
        assert secret not in response.text and "whsec_" not in response.text, response.request.url
    detail = reads[0].json()["data"]
    assert "callback_secret" not in detail and detail["callback_url"] == CALLBACK_URL
    assert reads[2].json()["data"]["callback_url"] is None  # the poster's own field: not for other operators
    assert await plaintext_anywhere(conn, secret) == []
    assert await plaintext_anywhere(conn, METADATA["order"]) != []  # the search is not vacuous


async def test_an_idempotent_replay_returns_the_same_secret_and_posts_once(client, conn, poster):
    key = {"Idempotency-Key": "post-with-callback"}
    balance = await scalar(conn, "SELECT balance FROM account WHERE operator_id = %s", poster["operator"]["id"])
    first = await post(client, poster, key, callback_url=CALLBACK_URL)
    second = await post(client, poster, key, callback_url=CALLBACK_URL)
    assert first.status_code == second.status_code == 201, second.text
    assert second.headers.get("idempotency-replayed") == "true"
    assert second.content == first.content
    secret = first.json()["data"]["callback_secret"]
    assert SECRET.fullmatch(secret)
    tasks = await scalar(conn, "SELECT count(*) FROM task WHERE poster_agent_id = %s", poster["id"])
    callbacks = await scalar(conn, "SELECT count(*) FROM webhook WHERE agent_id = %s", poster["id"])
    assert (tasks, callbacks) == (1, 1)
    after = await scalar(conn, "SELECT balance FROM account WHERE operator_id = %s", poster["operator"]["id"])
    assert balance - after == TASK["budget_credits"]  # held once
    # The stored response that replays the secret is sealed too.
    assert await plaintext_anywhere(conn, secret) == []


async def test_a_callback_url_that_is_not_public_is_422_and_nothing_is_created(client, conn, poster):
    def count(table: str) -> str:
        return f"SELECT count(*) FROM {table}"

    tables = ("task", "webhook", "event", "transfer", "webhook_delivery")
    before = {table: await scalar(conn, count(table)) for table in tables}
    balance = await scalar(conn, "SELECT balance FROM account WHERE operator_id = %s", poster["operator"]["id"])
    wrong = {}
    for url in FORBIDDEN_URLS:
        response = await post(client, poster, callback_url=url)
        answer = (response.status_code, error_code(response), response.json()["error"]["message"][:21])
        if answer != (422, "WEBHOOK_URL_FORBIDDEN", "Webhook URL refused: "):
            wrong[url] = response.text
    assert wrong == {}
    assert {table: await scalar(conn, count(table)) for table in tables} == before
    after = await scalar(conn, "SELECT balance FROM account WHERE operator_id = %s", poster["operator"]["id"])
    assert after == balance  # no escrow moved


async def test_the_url_is_refused_before_anything_the_database_would_refuse(client, conn, poster):
    """The guard runs before the transaction: a post that would also be short of credits is told about its URL."""
    response = await post(client, poster, callback_url="http://10.0.0.1/hook", budget_credits=1_000_000)
    assert (response.status_code, error_code(response)) == (422, "WEBHOOK_URL_FORBIDDEN")
    assert await scalar(conn, "SELECT count(*) FROM task") == 0


# What the callback receives ------------------------------------------------------------------------------------------


async def test_the_callback_gets_every_poster_side_event_of_its_task_and_nothing_else(
    client, conn, admin_key, poster, worker, other
):
    await add_agent(client, poster["operator"], "sibling")  # hears of the wallet too, not through the callback
    task = await post_with_callback(client, poster, metadata=METADATA)
    elsewhere = (await post(client, poster, title="Another task, no callback")).json()["data"]
    webhook_id = (await callback_of(conn, task["id"]))[0]
    losing = await bid(client, other, task["id"], 120)
    await bid(client, other, elsewhere["id"], 120)
    winning = await bid(client, worker, task["id"], 150)
    accepted = await accept_bid(client, poster, task["id"], winning["id"])
    assert accepted.status_code == 200, accepted.text
    work = await deliver(client, worker, task["id"])
    done = await client.post(
        f"{TASKS}/{task['id']}/deliverables/{work['id']}/accept", headers=bearer(poster["api_key"])
    )
    assert done.status_code == 200, done.text

    queued = await delivered_events(conn, webhook_id)
    cursor = await conn.execute(
        "SELECT id, type, agent_id, task_id, data FROM event WHERE task_id = %s AND agent_id = %s ORDER BY id",
        (task["id"], poster["id"]),
    )
    posters = await cursor.fetchall()
    assert queued == posters  # every event of the task addressed to its poster agent, once each ...
    assert all(agent == poster["id"] and task_id == task["id"] for _, _, agent, task_id, _ in queued)  # ... only
    types = [kind for _, kind, *_ in queued]
    assert set(types[:2]) == {"task.created", "credit.posted"}  # the posting's own events reach it
    claims = [data["claim_id"] for _, kind, _, _, data in queued if kind == "claim.created"]
    assert claims == [losing["id"], winning["id"]]
    assert types.count("deliverable.submitted") == 1 and types.count("task.status") == 3  # claimed, delivered, done
    assert types.count("credit.posted") == 2  # the hold, and the budget's change back at settlement
    # Not the bidders' events (claim.accepted, claim.rejected, deliverable.accepted), not the sibling's.
    assert set(types) == {"task.created", "credit.posted", "claim.created", "task.status", "deliverable.submitted"}
    # The metadata is echoed in every one of them, the SQL-written credit events included.
    assert [data.get("metadata") for *_, data in queued] == [METADATA] * len(queued)
    # The log shows the same deliveries, oldest first here, each pending (no worker runs in process).
    entries = await logged(client, poster, task["id"])
    assert [(d["event_id"], d["event"]) for d in entries] == [(event_id, kind) for event_id, kind, *_ in queued]
    assert {d["webhook_id"] for d in entries} == {webhook_id} and {d["status"] for d in entries} == {"pending"}


async def test_webhooks_of_the_poster_still_get_their_events_beside_the_callback(client, conn, poster, worker):
    hook = await register_webhook(client, poster, ["claim.created"])
    task = await post_with_callback(client, poster)
    claim = await bid(client, worker, task["id"])
    cursor = await conn.execute(
        """SELECT d.webhook_id FROM webhook_delivery d JOIN event e ON e.id = d.event_id
            WHERE e.type = 'claim.created' AND e.data->>'claim_id' = %s ORDER BY d.webhook_id""",
        (str(claim["id"]),),
    )
    assert [row[0] for row in await cursor.fetchall()] == [hook["id"], (await callback_of(conn, task["id"]))[0]]


async def test_matches_for_the_poster_agent_go_to_its_webhooks_not_to_its_callbacks(client, conn, admin_key):
    poster = await new_agent(client, admin_key, "matched-poster", capabilities=["wombats"])
    hook = await register_webhook(client, poster, ["task.new_match"])
    task = await post_with_callback(client, poster)
    stranger = await new_agent(client, admin_key, "stranger")
    assert (await post(client, stranger, title="Count the wombats")).status_code == 201
    await all_readable(conn)
    await delivery_rows.fan_out_matches(conn, limit=100)
    hook_types = [kind for _, kind, *_ in await delivered_events(conn, hook["id"])]
    assert hook_types == ["task.new_match"]
    callback_types = [kind for _, kind, *_ in await delivered_events(conn, (await callback_of(conn, task["id"]))[0])]
    assert sorted(callback_types) == ["credit.posted", "task.created"]


# Callbacks are not the agent's webhooks ------------------------------------------------------------------------------


async def test_callbacks_are_not_listed_counted_or_reachable_through_webhooks(client, conn, poster):
    tasks = [await post_with_callback(client, poster, budget_credits=50) for _ in range(3)]
    callback_id = (await callback_of(conn, tasks[0]["id"]))[0]
    listed = await client.get("/api/v1/webhooks", headers=bearer(poster["api_key"]))
    assert listed.status_code == 200 and listed.json()["data"] == []
    for _ in range(5):
        await register_webhook(client, poster, ["task.created"])
    sixth = await client.post(
        "/api/v1/webhooks",
        json={"url": "https://93.184.216.34/six", "events": ["task.created"]},
        headers=bearer(poster["api_key"]),
    )
    assert (sixth.status_code, error_code(sixth)) == (409, "LIMIT_REACHED")  # five webhooks, callbacks aside
    assert len((await client.get("/api/v1/webhooks", headers=bearer(poster["api_key"]))).json()["data"]) == 5
    await post_with_callback(client, poster, budget_credits=50)  # and a callback is no webhook of the limit either

    before = await scalar(conn, "SELECT row_to_json(w)::text FROM webhook w WHERE id = %s", callback_id)
    path = f"/api/v1/webhooks/{callback_id}"
    for method, target, body in [
        ("GET", path, None),
        ("PATCH", path, {"url": "https://93.184.216.35/stolen"}),
        ("PATCH", path, {"is_active": False}),
        ("DELETE", path, None),
        ("POST", f"{path}/rotate-secret", {}),
        ("POST", f"{path}/test", None),
        ("GET", f"{path}/deliveries", None),
        ("POST", f"{path}/deliveries/1/redeliver", None),
    ]:
        response = await client.request(method, target, json=body, headers=bearer(poster["api_key"]))
        assert (response.status_code, error_code(response)) == (404, "WEBHOOK_NOT_FOUND"), (method, target)
    assert await scalar(conn, "SELECT row_to_json(w)::text FROM webhook w WHERE id = %s", callback_id) == before


# GET /tasks/{id}/callback-deliveries ---------------------------------------------------------------------------------


async def test_the_log_is_newest_first_filtered_and_paginated_with_attempts(client, conn, admin_key, poster):
    task = await post_with_callback(client, poster)
    bidders = [await new_agent(client, admin_key, f"bidder{n}") for n in range(3)]
    for bidder in bidders:
        await bid(client, bidder, task["id"], 100)
    made = await logged(client, poster, task["id"])
    ids = [d["id"] for d in made]
    assert len(ids) == 5  # task.created, credit.posted, three claim.created
    await finish(conn, ids[0], "succeeded")
    await finish(conn, ids[2], "failed", attempts=2)
    await conn.execute(
        """INSERT INTO webhook_attempt (delivery_id, attempt_number, started_at, duration_ms, outcome,
                                        response_status, response_snippet, error, next_attempt_at)
           VALUES (%(d)s, 1, now(), 120, 'failed', 500, 'oops', 'HTTP 500', now()),
                  (%(d)s, 2, now(), 80, 'failed', 503, 'busy', 'HTTP 503', NULL)""",
        {"d": ids[2]},
    )
    everything = (await log(client, poster, task["id"])).json()
    assert [d["id"] for d in everything["data"]] == ids[::-1]
    failed = (await log(client, poster, task["id"], status="failed")).json()["data"]
    assert [d["id"] for d in failed] == [ids[2]]
    assert [(a["attempt_number"], a["response_status"], a["outcome"]) for a in failed[0]["attempts"]] == [
        (1, 500, "failed"),
        (2, 503, "failed"),
    ]
    assert [d["id"] for d in (await log(client, poster, task["id"], status="succeeded")).json()["data"]] == [ids[0]]
    first = (await log(client, poster, task["id"], limit=2)).json()
    assert [d["id"] for d in first["data"]] == ids[:2:-1][:2]
    assert first["meta"]["has_more"] is True and first["meta"]["count"] == 2
    seen, cursor = first["data"], first["meta"]["cursor"]
    while cursor:
        page = (await log(client, poster, task["id"], limit=2, cursor=cursor)).json()
        seen, cursor = seen + page["data"], page["meta"]["cursor"]
    assert [d["id"] for d in seen] == ids[::-1]
    # A cursor from another task's log is refused, not read.
    elsewhere = await post_with_callback(client, poster)
    refused = await log(client, poster, elsewhere["id"], limit=2, cursor=first["meta"]["cursor"])
    assert (refused.status_code, error_code(refused)) == (400, "INVALID_PARAMETER")


async def test_the_log_is_for_the_posters_operator_only(client, conn, admin_key, poster, worker, other):
    task = await post_with_callback(client, poster)
    sibling = await add_agent(client, poster["operator"], "sibling")
    assert await logged(client, sibling, task["id"]) == await logged(client, poster, task["id"])
    delivery_id = (await logged(client, poster, task["id"]))[0]["id"]
    for response in (await log(client, worker, task["id"]), await redeliver(client, worker, task["id"], delivery_id)):
        assert (response.status_code, error_code(response)) == (403, "FORBIDDEN"), response.text
    for response in (await log(client, poster, MISSING), await redeliver(client, poster, MISSING, delivery_id)):
        assert (response.status_code, error_code(response)) == (404, "TASK_NOT_FOUND"), response.text
    # A directed task does not exist for an agent it is not directed at (404), and is not its to read for one it is.
    directed = await post_with_callback(client, poster, eligible_agent_ids=[worker["id"]])
    assert (await log(client, poster, directed["id"])).status_code == 200
    hidden, refused = await log(client, other, directed["id"]), await log(client, worker, directed["id"])
    assert (hidden.status_code, error_code(hidden)) == (404, "TASK_NOT_FOUND")
    assert (refused.status_code, error_code(refused)) == (403, "FORBIDDEN")


async def test_a_task_without_a_callback_has_an_empty_log(client, poster):
    task = (await post(client, poster)).json()["data"]
    response = await log(client, poster, task["id"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"] == [] and body["meta"]["has_more"] is False and body["meta"]["cursor"] is None
    missing = await redeliver(client, poster, task["id"], 1)
    assert (missing.status_code, error_code(missing)) == (404, "DELIVERY_NOT_FOUND")


async def test_bad_ids_and_parameters_are_400(client, poster):
    task = await post_with_callback(client, poster)
    for response in (
        await log(client, poster, "abc"),
        await log(client, poster, 0),
        await log(client, poster, task["id"], status="bogus"),
        await log(client, poster, task["id"], limit=101),
        await log(client, poster, task["id"], cursor="?!"),
        await redeliver(client, poster, task["id"], "abc"),
        await redeliver(client, poster, "x", 1),
    ):
        assert (response.status_code, error_code(response)) == (400, "INVALID_PARAMETER"), response.text


# POST /tasks/{id}/callback-deliveries/{delivery_id}/redeliver --------------------------------------------------------


@pytest.mark.parametrize("status", ["failed", "succeeded"])
async def test_a_finished_delivery_is_scheduled_again(client, conn, poster, status):
    task = await post_with_callback(client, poster)
    first = (await logged(client, poster, task["id"]))[0]
    await finish(conn, first["id"], status, attempts=8)
    response = await redeliver(client, poster, task["id"], first["id"])
    assert response.status_code == 202, response.text
    again = response.json()["data"]
    assert (again["id"], again["event_id"], again["status"], again["attempt_count"]) == (
        first["id"],
        first["event_id"],
        "pending",
        8,
    )
    assert again["next_attempt_at"] and again["completed_at"] is None
    assert await scalar(conn, "SELECT retry_base FROM webhook_delivery WHERE id = %s", first["id"]) == 8
    pending = await redeliver(client, poster, task["id"], first["id"])
    assert (pending.status_code, error_code(pending)) == (409, "DELIVERY_PENDING")


async def test_only_this_tasks_callback_deliveries_can_be_redelivered(client, conn, poster, worker):
    task = await post_with_callback(client, poster)
    elsewhere = await post_with_callback(client, poster)
    hook = await register_webhook(client, poster, ["claim.created"])
    await bid(client, worker, elsewhere["id"])
    theirs = (await logged(client, poster, elsewhere["id"]))[0]
    hook_delivery = await scalar(conn, "SELECT max(id) FROM webhook_delivery WHERE webhook_id = %s", hook["id"])
    await finish(conn, theirs["id"], "failed")
    await finish(conn, hook_delivery, "failed")
    for delivery_id in (MISSING, theirs["id"], hook_delivery):
        response = await redeliver(client, poster, task["id"], delivery_id)
        assert (response.status_code, error_code(response)) == (404, "DELIVERY_NOT_FOUND"), delivery_id
        assert f"/api/v1/tasks/{task['id']}/callback-deliveries" in response.json()["error"]["suggestion"]
    assert await scalar(conn, "SELECT status FROM webhook_delivery WHERE id = %s", theirs["id"]) == "failed"


async def test_redelivering_on_a_disabled_callback_switches_it_back_on(client, conn, poster):
    task = await post_with_callback(client, poster)
    webhook_id = (await callback_of(conn, task["id"]))[0]
    first, second = await logged(client, poster, task["id"])
    # As the disable rule leaves it (app.repo.deliveries.disable_endpoint).
    await conn.execute(
        """UPDATE webhook SET is_active = false, disabled_at = now(), disabled_reason = 'the endpoint answered 410',
                  failure_count = 10, failing_since = now() - interval '2 days' WHERE id = %s""",
        (webhook_id,),
    )
    await finish(conn, first["id"], "failed", attempts=1)
    await finish(conn, second["id"], "failed", attempts=1)
    response = await redeliver(client, poster, task["id"], first["id"])
    assert response.status_code == 202, response.text
    assert response.json()["data"]["status"] == "pending"
    cursor = await conn.execute(
        "SELECT is_active, disabled_at, disabled_reason, failure_count, failing_since FROM webhook WHERE id = %s",
        (webhook_id,),
    )
    assert await cursor.fetchone() == (True, None, None, 0, None)
    # Only the delivery asked for goes again; the task's next events reach the callback again.
    assert await scalar(conn, "SELECT status FROM webhook_delivery WHERE id = %s", second["id"]) == "failed"


async def test_a_refused_redelivery_leaves_a_disabled_callback_off(client, conn, poster):
    task = await post_with_callback(client, poster)
    webhook_id = (await callback_of(conn, task["id"]))[0]
    await conn.execute(
        "UPDATE webhook SET is_active = false, disabled_at = now(), disabled_reason = 'gone' WHERE id = %s",
        (webhook_id,),
    )
    response = await redeliver(client, poster, task["id"], MISSING)
    assert (response.status_code, error_code(response)) == (404, "DELIVERY_NOT_FOUND")
    assert await scalar(conn, "SELECT is_active FROM webhook WHERE id = %s", webhook_id) is False
