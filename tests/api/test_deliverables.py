"""Contract tests for deliverables (deliver, list, accept with settlement, revision) and for cancel and rollback.

Economics: a new operator starts with 500 credits, +100 per agent. Accepting a deliverable pays
price - floor(price x 10%) to the worker's operator, the fee to platform revenue and budget - price back to the
poster; cancel refunds the whole budget; rollback moves nothing.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.conftest import bearer, new_agent

TASKS = "/api/v1/tasks"
TASK = {
    "title": "Parse invoices",
    "description": "Extract totals from a batch of PDF invoices.",
    "budget_credits": 200,
}
START = 600  # 500 for the operator + 100 for its one agent


async def post_task(client, agent: dict, **fields) -> dict:
    response = await client.post(TASKS, json={**TASK, **fields}, headers=bearer(agent["api_key"]))
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def assign(client, poster: dict, worker: dict, task_id: int, price: int) -> dict:
    """The worker bids `price` and the poster accepts; returns the bid."""
    placed = await client.post(
        f"{TASKS}/{task_id}/claims", json={"proposed_credits": price}, headers=bearer(worker["api_key"])
    )
    assert placed.status_code == 201, placed.text
    claim = placed.json()["data"]
    accepted = await client.post(f"{TASKS}/{task_id}/claims/{claim['id']}/accept", headers=bearer(poster["api_key"]))
    assert accepted.status_code == 200, accepted.text
    return claim


async def assigned_task(client, poster: dict, worker: dict, *, price: int = 150, **fields) -> dict:
    task = await post_task(client, poster, **fields)
    await assign(client, poster, worker, task["id"], price)
    return task


async def submit(client, agent: dict, task_id: int, content: str = "the work"):
    return await client.post(
        f"{TASKS}/{task_id}/deliverables", json={"content": content}, headers=bearer(agent["api_key"])
    )


async def deliver(client, agent: dict, task_id: int, content: str = "the work") -> dict:
    response = await submit(client, agent, task_id, content)
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def accept(client, agent: dict, task_id: int, deliverable_id: int, **headers):
    return await client.post(
        f"{TASKS}/{task_id}/deliverables/{deliverable_id}/accept", headers={**bearer(agent["api_key"]), **headers}
    )


async def revise(client, agent: dict, task_id: int, deliverable_id: int, notes="please fix"):
    body = {} if notes is None else {"revision_notes": notes}
    return await client.post(
        f"{TASKS}/{task_id}/deliverables/{deliverable_id}/revision", json=body, headers=bearer(agent["api_key"])
    )


async def cancel(client, agent: dict, task_id: int):
    return await client.post(f"{TASKS}/{task_id}/cancel", headers=bearer(agent["api_key"]))


async def rollback(client, agent: dict, task_id: int):
    return await client.post(f"{TASKS}/{task_id}/rollback", headers=bearer(agent["api_key"]))


async def get_task(client, agent: dict, task_id: int) -> dict:
    response = await client.get(f"{TASKS}/{task_id}", headers=bearer(agent["api_key"]))
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def list_deliverables(client, agent: dict, task_id: int, **params):
    return await client.get(f"{TASKS}/{task_id}/deliverables", params=params, headers=bearer(agent["api_key"]))


async def claim_statuses(client, agent: dict, task_id: int) -> list[str]:
    response = await client.get(f"{TASKS}/{task_id}/claims", headers=bearer(agent["api_key"]))
    return [c["status"] for c in response.json()["data"]]


async def wallet(client, agent: dict) -> tuple[int, int]:
    """(credit_balance, escrow_held) of the agent's operator."""
    data = (await client.get("/api/v1/agents/me/credits", headers=bearer(agent["api_key"]))).json()["data"]
    return data["credit_balance"], data["escrow_held"]


async def platform_revenue(conn: psycopg.AsyncConnection) -> int:
    # Platform revenue is the sum of its sub-accounts (domain.ledger.REVENUE_SHARDS).
    cursor = await conn.execute("SELECT sum(balance) FROM account WHERE kind = 'platform_revenue'")
    return (await cursor.fetchone())[0]


async def tasks_completed(client, viewer: dict, agent_id: int) -> int:
    response = await client.get(f"/api/v1/agents/{agent_id}", headers=bearer(viewer["api_key"]))
    assert response.status_code == 200, response.text
    return response.json()["data"]["tasks_completed"]


def error_code(response) -> str:
    body = response.json()
    assert body["ok"] is False, response.text
    return body["error"]["code"]


@pytest.fixture
async def stranger(client, admin_key) -> dict:
    return await new_agent(client, admin_key, "stranger")


# POST /tasks/{id}/deliverables --------------------------------------------------------------------------------------


async def test_delivering_returns_201_and_marks_the_task_delivered(client, poster, worker):
    task = await assigned_task(client, poster, worker)
    response = await submit(client, worker, task["id"], "here it is")
    assert response.status_code == 201, response.text
    delivered = response.json()["data"]
    assert isinstance(delivered["id"], int)
    assert delivered | {"id": None, "submitted_at": None} == {
        "id": None,
        "task_id": task["id"],
        "agent_id": worker["id"],
        "content": "here it is",
        "status": "submitted",
        "revision_notes": None,
        "revision_number": 1,
        "submitted_at": None,
        "is_late": False,
    }
    detail = await get_task(client, poster, task["id"])
    assert detail["status"] == "delivered" and detail["deliverables_count"] == 1


async def test_delivering_a_task_not_assigned_to_you_is_403_not_claimed_by_you(client, poster, worker, stranger):
    task = await assigned_task(client, poster, worker)
    for outsider in (stranger, poster):
        response = await submit(client, outsider, task["id"])
        assert response.status_code == 403 and error_code(response) == "NOT_CLAIMED_BY_YOU"


async def test_delivering_on_an_open_task_is_refused_as_not_claimed_by_you(client, poster, worker):
    """TaskHive's order puts NOT_CLAIMED_BY_YOU first, and an open task has no worker: 403, not 409."""
    task = await post_task(client, poster)
    response = await submit(client, worker, task["id"])
    assert response.status_code == 403 and error_code(response) == "NOT_CLAIMED_BY_YOU"


async def test_delivering_while_a_delivery_awaits_review_is_409_invalid_status(client, poster, worker):
    task = await assigned_task(client, poster, worker)
    await deliver(client, worker, task["id"])
    response = await submit(client, worker, task["id"])
    assert response.status_code == 409 and error_code(response) == "INVALID_STATUS"


async def test_delivering_on_a_completed_task_is_409_invalid_status(client, poster, worker):
    task = await assigned_task(client, poster, worker)
    first = await deliver(client, worker, task["id"])
    assert (await accept(client, poster, task["id"], first["id"])).status_code == 200
    response = await submit(client, worker, task["id"])
    assert response.status_code == 409 and error_code(response) == "INVALID_STATUS"


async def test_delivering_on_an_unknown_task_is_404(client, worker):
    response = await submit(client, worker, 999999999)
    assert response.status_code == 404 and error_code(response) == "TASK_NOT_FOUND"


@pytest.mark.parametrize("body", [{"content": ""}, {"content": "c" * 50_001}, {}, {"content": 5}])
async def test_delivering_bad_content_is_422_validation_error(client, poster, worker, body):
    task = await assigned_task(client, poster, worker)
    response = await client.post(f"{TASKS}/{task['id']}/deliverables", json=body, headers=bearer(worker["api_key"]))
    assert response.status_code == 422 and error_code(response) == "VALIDATION_ERROR"
    assert (await get_task(client, poster, task["id"]))["status"] == "claimed"


@pytest.mark.parametrize("content", ["x", "c" * 50_000])
async def test_delivering_1_to_50000_characters_is_accepted(client, poster, worker, content):
    task = await assigned_task(client, poster, worker)
    assert (await deliver(client, worker, task["id"], content))["content"] == content


async def test_revision_numbers_count_each_delivery_from_1(client, poster, worker):
    task = await assigned_task(client, poster, worker)
    numbers = []
    for round_ in range(3):
        delivered = await deliver(client, worker, task["id"], f"round {round_}")
        numbers.append(delivered["revision_number"])
        if round_ < 2:
            assert (await revise(client, poster, task["id"], delivered["id"])).status_code == 200
    assert numbers == [1, 2, 3]


async def test_after_max_revisions_plus_one_deliveries_no_more_rounds(client, poster, worker):
    task = await assigned_task(client, poster, worker, max_revisions=2)
    last = None
    for _ in range(3):
        last = await deliver(client, worker, task["id"])
        if last["revision_number"] < 3:
            assert (await revise(client, poster, task["id"], last["id"])).status_code == 200
    response = await revise(client, poster, task["id"], last["id"])
    assert response.status_code == 409 and error_code(response) == "MAX_REVISIONS"
    assert error_code(await submit(client, worker, task["id"])) == "INVALID_STATUS"
    detail = await get_task(client, poster, task["id"])
    assert detail["status"] == "delivered" and detail["deliverables_count"] == 3


async def test_with_max_revisions_0_only_one_delivery_and_no_revision(client, poster, worker):
    task = await assigned_task(client, poster, worker, max_revisions=0)
    only = await deliver(client, worker, task["id"])
    assert only["revision_number"] == 1
    response = await revise(client, poster, task["id"], only["id"])
    assert response.status_code == 409 and error_code(response) == "MAX_REVISIONS"
    assert (await submit(client, worker, task["id"])).status_code == 409
    assert (await accept(client, poster, task["id"], only["id"])).status_code == 200


async def test_a_delivery_before_the_deadline_is_not_late(client, poster, worker):
    task = await assigned_task(client, poster, worker, deadline="2999-01-01T00:00:00Z")
    assert (await deliver(client, worker, task["id"]))["is_late"] is False


# GET /tasks/{id}/deliverables ---------------------------------------------------------------------------------------


async def test_the_poster_sees_every_deliverable_and_the_worker_its_own(client, admin_key, poster, worker):
    task = await assigned_task(client, poster, worker)
    mine = await deliver(client, worker, task["id"], "first worker")
    await revise(client, poster, task["id"], mine["id"])
    assert (await rollback(client, poster, task["id"])).status_code == 200
    successor = await new_agent(client, admin_key, "successor")
    await assign(client, poster, successor, task["id"], 120)
    theirs = await deliver(client, successor, task["id"], "second worker")

    by_poster = (await list_deliverables(client, poster, task["id"])).json()["data"]
    assert [d["id"] for d in by_poster] == [mine["id"], theirs["id"]]
    assert by_poster[0]["status"] == "revision_requested" and by_poster[0]["revision_notes"] == "please fix"
    assert set(by_poster[0]) == {
        "id",
        "task_id",
        "agent_id",
        "content",
        "status",
        "revision_notes",
        "revision_number",
        "submitted_at",
    }
    by_first = (await list_deliverables(client, worker, task["id"])).json()["data"]
    assert [d["id"] for d in by_first] == [mine["id"]]
    by_second = (await list_deliverables(client, successor, task["id"])).json()["data"]
    assert [d["id"] for d in by_second] == [theirs["id"]]


async def test_an_unrelated_agent_cannot_list_deliverables_403(client, poster, worker, stranger):
    task = await assigned_task(client, poster, worker)
    await deliver(client, worker, task["id"])
    response = await list_deliverables(client, stranger, task["id"])
    assert response.status_code == 403 and error_code(response) == "FORBIDDEN"


async def test_listing_deliverables_of_an_unknown_task_is_404(client, poster):
    response = await list_deliverables(client, poster, 999999999)
    assert response.status_code == 404 and error_code(response) == "TASK_NOT_FOUND"


async def test_listing_deliverables_paginates(client, poster, worker):
    task = await assigned_task(client, poster, worker, max_revisions=4)
    ids = []
    for _ in range(5):
        delivered = await deliver(client, worker, task["id"])
        ids.append(delivered["id"])
        if len(ids) < 5:
            await revise(client, poster, task["id"], delivered["id"])
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (await list_deliverables(client, poster, task["id"], **params)).json()
        seen += [d["id"] for d in body["data"]]
        cursor = body["meta"]["cursor"]
        if cursor is None:
            break
    assert seen == ids


# POST .../deliverables/{id}/accept ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "price"),
    [(200, 150), (200, 200), (200, 37), (10, 1), (10, 10), (600, 599)],
)
async def test_accepting_settles_the_escrow_exactly(client, conn, poster, worker, budget, price):
    revenue = await platform_revenue(conn)
    task = await assigned_task(client, poster, worker, budget_credits=budget, price=price)
    delivered = await deliver(client, worker, task["id"])
    response = await accept(client, poster, task["id"], delivered["id"])
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"task_id": task["id"], "deliverable_id": delivered["id"], "status": "completed"}

    fee = price * 10 // 100
    assert await wallet(client, poster) == (START - budget + (budget - price), 0)
    assert await wallet(client, worker) == (START + price - fee, 0)
    assert await platform_revenue(conn) == revenue + fee


async def test_accepting_completes_the_task_and_counts_it_for_the_worker(client, poster, worker):
    task = await assigned_task(client, poster, worker)
    before = await tasks_completed(client, poster, worker["id"])
    delivered = await deliver(client, worker, task["id"])
    await accept(client, poster, task["id"], delivered["id"])
    assert await tasks_completed(client, poster, worker["id"]) == before + 1
    assert (await get_task(client, worker, task["id"]))["status"] == "completed"
    listed = (await list_deliverables(client, poster, task["id"])).json()["data"]
    assert [d["status"] for d in listed] == ["accepted"]


async def test_accepting_by_a_non_poster_is_403(client, poster, worker, stranger):
    task = await assigned_task(client, poster, worker)
    delivered = await deliver(client, worker, task["id"])
    for outsider in (worker, stranger):
        response = await accept(client, outsider, task["id"], delivered["id"])
        assert response.status_code == 403 and error_code(response) == "FORBIDDEN"
    assert (await get_task(client, poster, task["id"]))["status"] == "delivered"


async def test_accepting_when_the_task_is_not_delivered_is_409_invalid_status(client, poster, worker):
    task = await assigned_task(client, poster, worker)
    delivered = await deliver(client, worker, task["id"])
    await revise(client, poster, task["id"], delivered["id"])
    response = await accept(client, poster, task["id"], delivered["id"])
    assert response.status_code == 409 and error_code(response) == "INVALID_STATUS"
    assert (await get_task(client, poster, task["id"]))["status"] == "in_progress"


async def test_accepting_twice_is_409_and_pays_once(client, poster, worker):
    task = await assigned_task(client, poster, worker, price=100)
    delivered = await deliver(client, worker, task["id"])
    await accept(client, poster, task["id"], delivered["id"])
    response = await accept(client, poster, task["id"], delivered["id"])
    assert response.status_code == 409 and error_code(response) == "INVALID_STATUS"
    assert await wallet(client, worker) == (START + 90, 0)


async def test_accepting_an_unknown_or_foreign_deliverable_is_404(client, poster, worker):
    task = await assigned_task(client, poster, worker)
    other = await assigned_task(client, poster, worker, title="Another task")
    await deliver(client, worker, task["id"])
    foreign = await deliver(client, worker, other["id"])
    for deliverable_id in (999999999, foreign["id"]):
        response = await accept(client, poster, task["id"], deliverable_id)
        assert response.status_code == 404 and error_code(response) == "DELIVERABLE_NOT_FOUND"


async def test_accepting_on_an_unknown_task_is_404(client, poster):
    response = await accept(client, poster, 999999999, 1)
    assert response.status_code == 404 and error_code(response) == "TASK_NOT_FOUND"


async def test_accepting_replayed_with_an_idempotency_key_settles_once(client, conn, poster, worker):
    revenue = await platform_revenue(conn)
    task = await assigned_task(client, poster, worker, price=150)
    delivered = await deliver(client, worker, task["id"])
    first = await accept(client, poster, task["id"], delivered["id"], **{"Idempotency-Key": "accept-once"})
    again = await accept(client, poster, task["id"], delivered["id"], **{"Idempotency-Key": "accept-once"})
    assert first.status_code == again.status_code == 200
    assert "idempotency-replayed" not in first.headers
    assert again.headers["idempotency-replayed"] == "true"
    assert again.json()["data"] == first.json()["data"]
    assert await wallet(client, worker) == (START + 135, 0)
    assert await wallet(client, poster) == (START - 150, 0)
    assert await platform_revenue(conn) == revenue + 15


# POST .../deliverables/{id}/revision --------------------------------------------------------------------------------


async def test_requesting_a_revision_sends_the_task_back_to_in_progress(client, poster, worker):
    task = await assigned_task(client, poster, worker)
    delivered = await deliver(client, worker, task["id"])
    response = await revise(client, poster, task["id"], delivered["id"], "add the totals")
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {
        "task_id": task["id"],
        "deliverable_id": delivered["id"],
        "status": "revision_requested",
    }
    assert (await get_task(client, poster, task["id"]))["status"] == "in_progress"
    listed = (await list_deliverables(client, worker, task["id"])).json()["data"]
    assert (listed[0]["status"], listed[0]["revision_notes"]) == ("revision_requested", "add the totals")
    assert (await deliver(client, worker, task["id"]))["revision_number"] == 2


@pytest.mark.parametrize("notes", [None, ""])
async def test_a_revision_without_notes_is_422(client, poster, worker, notes):
    task = await assigned_task(client, poster, worker)
    delivered = await deliver(client, worker, task["id"])
    response = await revise(client, poster, task["id"], delivered["id"], notes)
    assert response.status_code == 422 and error_code(response) == "VALIDATION_ERROR"
    assert (await get_task(client, poster, task["id"]))["status"] == "delivered"


async def test_a_revision_with_blank_notes_is_422(client, poster, worker):
    task = await assigned_task(client, poster, worker)
    delivered = await deliver(client, worker, task["id"])
    response = await revise(client, poster, task["id"], delivered["id"], "   ")
    assert response.status_code == 422 and error_code(response) == "VALIDATION_ERROR"


async def test_a_revision_by_a_non_poster_is_403(client, poster, worker, stranger):
    task = await assigned_task(client, poster, worker)
    delivered = await deliver(client, worker, task["id"])
    for outsider in (worker, stranger):
        response = await revise(client, outsider, task["id"], delivered["id"])
        assert response.status_code == 403 and error_code(response) == "FORBIDDEN"


async def test_a_revision_of_a_deliverable_already_sent_back_is_409(client, poster, worker):
    task = await assigned_task(client, poster, worker)
    delivered = await deliver(client, worker, task["id"])
    await revise(client, poster, task["id"], delivered["id"])
    response = await revise(client, poster, task["id"], delivered["id"])
    assert response.status_code == 409 and error_code(response) == "INVALID_STATUS"


async def test_a_revision_of_an_older_deliverable_is_409_invalid_status(client, poster, worker):
    task = await assigned_task(client, poster, worker)
    old = await deliver(client, worker, task["id"])
    await revise(client, poster, task["id"], old["id"])
    await deliver(client, worker, task["id"])
    response = await revise(client, poster, task["id"], old["id"])
    assert response.status_code == 409 and error_code(response) == "INVALID_STATUS"


async def test_a_revision_of_an_unknown_deliverable_is_404(client, poster, worker):
    task = await assigned_task(client, poster, worker)
    await deliver(client, worker, task["id"])
    response = await revise(client, poster, task["id"], 999999999)
    assert response.status_code == 404 and error_code(response) == "DELIVERABLE_NOT_FOUND"


# POST /tasks/{id}/cancel --------------------------------------------------------------------------------------------


async def test_cancelling_an_open_task_refunds_the_whole_budget_and_rejects_bids(client, poster, worker):
    task = await post_task(client, poster)
    await client.post(f"{TASKS}/{task['id']}/claims", json={"proposed_credits": 5}, headers=bearer(worker["api_key"]))
    assert await wallet(client, poster) == (START - 200, 200)
    response = await cancel(client, poster, task["id"])
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["task_id"], data["status"]) == (task["id"], "cancelled") and data["message"]
    assert await wallet(client, poster) == (START, 0)
    assert await claim_statuses(client, poster, task["id"]) == ["rejected"]
    assert (await get_task(client, poster, task["id"]))["status"] == "cancelled"


async def test_cancelling_a_claimed_task_refunds_the_budget_and_rejects_the_accepted_bid(client, poster, worker):
    task = await assigned_task(client, poster, worker, price=80)
    assert (await cancel(client, poster, task["id"])).status_code == 200
    assert await wallet(client, poster) == (START, 0)
    assert await wallet(client, worker) == (START, 0)
    assert await claim_statuses(client, poster, task["id"]) == ["rejected"]
    detail = await get_task(client, poster, task["id"])
    assert (detail["status"], detail["claimed_by_agent_id"], detail["price_credits"]) == ("cancelled", None, None)


async def test_cancelling_by_a_non_poster_is_403(client, poster, worker):
    task = await post_task(client, poster)
    response = await cancel(client, worker, task["id"])
    assert response.status_code == 403 and error_code(response) == "FORBIDDEN"
    assert await wallet(client, poster) == (START - 200, 200)


async def test_cancelling_replayed_with_an_idempotency_key_refunds_once(client, poster):
    task = await post_task(client, poster)
    headers = {**bearer(poster["api_key"]), "Idempotency-Key": "cancel-once"}
    first = await client.post(f"{TASKS}/{task['id']}/cancel", headers=headers)
    again = await client.post(f"{TASKS}/{task['id']}/cancel", headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotency-replayed"] == "true" and again.json()["data"] == first.json()["data"]
    assert await wallet(client, poster) == (START, 0)


async def reach(client, poster, worker, status: str) -> dict:
    """A task driven to `status` (in_progress, delivered, completed or cancelled)."""
    if status == "cancelled":
        task = await post_task(client, poster)
        assert (await cancel(client, poster, task["id"])).status_code == 200
        return task
    task = await assigned_task(client, poster, worker)
    delivered = await deliver(client, worker, task["id"])
    if status == "in_progress":
        assert (await revise(client, poster, task["id"], delivered["id"])).status_code == 200
    if status == "completed":
        assert (await accept(client, poster, task["id"], delivered["id"])).status_code == 200
    assert (await get_task(client, poster, task["id"]))["status"] == status
    return task


@pytest.mark.parametrize("status", ["in_progress", "delivered", "completed", "cancelled"])
async def test_cancelling_outside_open_or_claimed_is_409_invalid_status(client, poster, worker, status):
    task = await reach(client, poster, worker, status)
    before = await wallet(client, poster)
    response = await cancel(client, poster, task["id"])
    assert response.status_code == 409 and error_code(response) == "INVALID_STATUS"
    assert await wallet(client, poster) == before


async def test_cancelling_an_unknown_task_is_404(client, poster):
    response = await cancel(client, poster, 999999999)
    assert response.status_code == 404 and error_code(response) == "TASK_NOT_FOUND"


# POST /tasks/{id}/rollback ------------------------------------------------------------------------------------------


async def test_rolling_back_a_claimed_task_reopens_it_and_moves_no_credits(client, poster, worker):
    task = await assigned_task(client, poster, worker, price=90)
    before = await wallet(client, poster), await wallet(client, worker)
    response = await rollback(client, poster, task["id"])
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["task_id"], data["status"]) == (task["id"], "open") and data["message"]
    assert (await wallet(client, poster), await wallet(client, worker)) == before
    assert await wallet(client, poster) == (START - 200, 200)
    detail = await get_task(client, poster, task["id"])
    assert (detail["status"], detail["claimed_by_agent_id"], detail["price_credits"]) == ("open", None, None)
    assert await claim_statuses(client, poster, task["id"]) == ["rejected"]


async def test_rolling_back_an_in_progress_task_reopens_it(client, poster, worker):
    task = await reach(client, poster, worker, "in_progress")
    assert (await rollback(client, poster, task["id"])).json()["data"]["status"] == "open"
    assert await wallet(client, poster) == (START - 200, 200)


@pytest.mark.parametrize("status", ["open", "delivered", "completed", "cancelled"])
async def test_rolling_back_outside_claimed_or_in_progress_is_409(client, poster, worker, status):
    task = await post_task(client, poster) if status == "open" else await reach(client, poster, worker, status)
    response = await rollback(client, poster, task["id"])
    assert response.status_code == 409 and error_code(response) == "INVALID_STATUS"


async def test_rolling_back_by_a_non_poster_is_403(client, poster, worker):
    task = await assigned_task(client, poster, worker)
    response = await rollback(client, worker, task["id"])
    assert response.status_code == 403 and error_code(response) == "FORBIDDEN"
    assert (await get_task(client, poster, task["id"]))["status"] == "claimed"


async def test_rolling_back_an_unknown_task_is_404(client, poster):
    response = await rollback(client, poster, 999999999)
    assert response.status_code == 404 and error_code(response) == "TASK_NOT_FOUND"


async def test_after_a_rollback_the_next_worker_gets_every_revision_round(client, admin_key, poster, worker):
    task = await assigned_task(client, poster, worker, max_revisions=1)
    used = await deliver(client, worker, task["id"])
    await revise(client, poster, task["id"], used["id"])
    assert (await rollback(client, poster, task["id"])).status_code == 200

    successor = await new_agent(client, admin_key, "successor")
    await assign(client, poster, successor, task["id"], 100)
    fresh = await deliver(client, successor, task["id"])
    assert fresh["revision_number"] == 1
    assert (await revise(client, poster, task["id"], fresh["id"])).status_code == 200
    last = await deliver(client, successor, task["id"])
    assert last["revision_number"] == 2
    assert error_code(await revise(client, poster, task["id"], last["id"])) == "MAX_REVISIONS"
    assert (await accept(client, poster, task["id"], last["id"])).status_code == 200
    assert await wallet(client, successor) == (START + 90, 0)
    assert await wallet(client, worker) == (START, 0)
    assert await wallet(client, poster) == (START - 100, 0)


async def test_the_same_worker_reassigned_after_a_rollback_starts_again_at_revision_1(client, poster, worker):
    task = await assigned_task(client, poster, worker, max_revisions=1)
    used = await deliver(client, worker, task["id"])
    await revise(client, poster, task["id"], used["id"])
    await rollback(client, poster, task["id"])
    await assign(client, poster, worker, task["id"], 120)
    again = await deliver(client, worker, task["id"])
    assert again["revision_number"] == 1
    assert (await revise(client, poster, task["id"], again["id"])).status_code == 200
