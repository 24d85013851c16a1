"""Every suggestion tells the caller what to do next, true to the state it refers to (issue 11, finding 8): a
finished task is not "awaiting review", an admin is not told to ask an admin, malformed JSON is not a field's
fault."""

from __future__ import annotations

import pytest

from tests.api.test_deliverables import (
    TASK,
    TASKS,
    accept,
    assigned_task,
    cancel,
    deliver,
    error_code,
    reach,
    revise,
    rollback,
    submit,
)
from tests.conftest import bearer, new_agent


def suggestion(response, code: str) -> str:
    assert error_code(response) == code, response.text
    return response.json()["error"]["suggestion"]


async def completed(client, poster, worker) -> tuple[dict, dict]:
    task = await assigned_task(client, poster, worker)
    delivered = await deliver(client, worker, task["id"])
    assert (await accept(client, poster, task["id"], delivered["id"])).status_code == 200
    return task, delivered


async def test_delivering_on_a_completed_task_does_not_say_wait_for_a_review(client, poster, worker):
    task, _ = await completed(client, poster, worker)
    text = suggestion(await submit(client, worker, task["id"]), "INVALID_STATUS")
    assert "wait" not in text.lower() and "completed" in text


async def test_delivering_while_a_delivery_awaits_review_says_to_wait(client, poster, worker):
    task = await assigned_task(client, poster, worker)
    await deliver(client, worker, task["id"])
    assert "wait" in suggestion(await submit(client, worker, task["id"]), "INVALID_STATUS").lower()


async def test_reviewing_a_completed_task_does_not_say_wait_for_a_delivery(client, poster, worker):
    task, delivered = await completed(client, poster, worker)
    for response in (
        await revise(client, poster, task["id"], delivered["id"]),
        await accept(client, poster, task["id"], delivered["id"]),
    ):
        text = suggestion(response, "INVALID_STATUS")
        assert "wait" not in text.lower() and "completed" in text


@pytest.mark.parametrize("status", ["completed", "cancelled"])
async def test_cancelling_or_rolling_back_a_finished_task_says_it_is_finished(client, poster, worker, status):
    task = await reach(client, poster, worker, status)
    for response in (await cancel(client, poster, task["id"]), await rollback(client, poster, task["id"])):
        text = suggestion(response, "INVALID_STATUS")
        assert "nothing more can change" in text, text


async def test_cancelling_a_task_in_progress_says_to_roll_it_back_first(client, poster, worker):
    task = await reach(client, poster, worker, "in_progress")
    assert "rollback" in suggestion(await cancel(client, poster, task["id"]), "INVALID_STATUS")


async def test_accepting_a_bid_on_an_assigned_task_tells_the_poster_about_rollback(client, poster, worker, admin_key):
    task = await assigned_task(client, poster, worker)
    rival = await new_agent(client, admin_key, "rival")
    # The rival cannot bid (the task is not open), so the poster tries to accept the worker's accepted bid again.
    claims = await client.get(f"{TASKS}/{task['id']}/claims", headers=bearer(poster["api_key"]))
    claim_id = claims.json()["data"][0]["id"]
    response = await client.post(f"{TASKS}/{task['id']}/claims/{claim_id}/accept", headers=bearer(poster["api_key"]))
    assert "rollback" in suggestion(response, "TASK_NOT_OPEN")
    placed = await client.post(
        f"{TASKS}/{task['id']}/claims", json={"proposed_credits": 10}, headers=bearer(rival["api_key"])
    )
    assert "browse other open tasks" in suggestion(placed, "TASK_NOT_OPEN")


async def test_withdrawing_an_accepted_bid_says_to_deliver(client, poster, worker):
    task = await assigned_task(client, poster, worker)
    claims = await client.get(f"{TASKS}/{task['id']}/claims", headers=bearer(worker["api_key"]))
    claim_id = claims.json()["data"][0]["id"]
    response = await client.post(f"{TASKS}/{task['id']}/claims/{claim_id}/withdraw", headers=bearer(worker["api_key"]))
    assert "deliver" in suggestion(response, "INVALID_STATUS")


async def test_an_admin_debit_past_the_balance_does_not_tell_the_admin_to_ask_an_admin(client, admin_key, poster):
    operator_id = poster["operator"]["id"]
    response = await client.post(
        f"/api/v1/admin/operators/{operator_id}/credits",
        json={"amount": -1_000_000, "reason": "correction"},
        headers=bearer(admin_key),
    )
    text = suggestion(response, "INSUFFICIENT_CREDITS")
    assert "admin" not in text.lower() and "at most" in text


async def test_a_poster_short_of_credits_is_told_the_most_it_can_post(client, poster):
    response = await client.post(TASKS, json={**TASK, "budget_credits": 1_000_000}, headers=bearer(poster["api_key"]))
    assert "at most 600" in suggestion(response, "INSUFFICIENT_CREDITS")


@pytest.mark.parametrize("body", [b'{"title": "Parse invoices", "descr', b'{"a": 1, "a": 2}', b"\xff\xfe"])
async def test_malformed_json_is_not_blamed_on_a_field(client, poster, body):
    response = await client.post(
        TASKS, content=body, headers={**bearer(poster["api_key"]), "Content-Type": "application/json"}
    )
    text = suggestion(response, "VALIDATION_ERROR")
    assert "field" not in text.lower() and "JSON" in text


async def test_a_field_error_names_the_field(client, poster):
    response = await client.post(TASKS, json={**TASK, "title": "abc"}, headers=bearer(poster["api_key"]))
    assert "'title'" in suggestion(response, "VALIDATION_ERROR")


async def test_a_paused_agent_is_told_its_operator_resumes_it_and_a_suspended_one_an_admin(
    client, admin_key, operator, agent
):
    me = {"Authorization": f"Bearer {agent['api_key']}"}
    await client.post(f"/api/v1/operator/agents/{agent['id']}/pause", headers=bearer(operator["api_key"]))
    paused = (await client.get("/api/v1/agents/me", headers=me)).json()["error"]
    assert "operator to resume it" in paused["suggestion"] and "admin" not in paused["suggestion"]
    await client.post(f"/api/v1/admin/agents/{agent['id']}/suspend", headers=bearer(admin_key))
    suspended = (await client.get("/api/v1/agents/me", headers=me)).json()["error"]
    assert suspended["suggestion"] == "Ask a marketplace admin to reactivate it."
