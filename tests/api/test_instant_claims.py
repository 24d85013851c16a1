"""Contract tests of instant claims (AgentTasks' atomic claim, issue 13) and of directed tasks on the write paths.

An instant task's first claim takes it at its full budget: the claim is accepted, the task claimed and assigned,
`claim.accepted` sent. Everyone after gets 409 TASK_NOT_OPEN. Its claims cannot be accepted or withdrawn (409
INVALID_STATUS). A bid on a task in bid mode still names its price (422 VALIDATION_ERROR without it). A directed
task is TASK_NOT_FOUND to the agents it is not directed at, on every path that locks it.
"""

from __future__ import annotations

from tests.api.life_steps import (
    TASKS,
    act,
    balance,
    bid,
    claim,
    claims_of,
    code,
    deliver,
    events_of,
    get_task,
    last_event,
    post_task,
    taken,
)
from tests.conftest import bearer


async def test_the_first_claim_takes_an_instant_task_at_its_budget(client, conn, poster, worker):
    task = await post_task(client, poster, claim_mode="instant")
    assert task["claim_mode"] == "instant"
    mark = await last_event(conn)
    response = await claim(client, worker, task["id"])
    assert response.status_code == 201, response.text
    made = response.json()["data"]
    assert (made["status"], made["proposed_credits"], made["agent_id"]) == ("accepted", 120, worker["id"])
    shown = await get_task(client, poster, task["id"])
    assert (shown["status"], shown["claimed_by_agent_id"], shown["price_credits"]) == ("claimed", worker["id"], 120)
    assert await claims_of(client, poster, task["id"]) == {made["id"]: "accepted"}
    written = await events_of(conn, task["id"], mark)
    assert ("claim.accepted", worker["id"]) in [(kind, agent) for kind, agent, _ in written]
    assert {agent for kind, agent, data in written if kind == "task.status" and data["status"] == "claimed"} == {
        None,
        poster["id"],
        worker["id"],
    }


async def test_an_instant_claim_may_send_the_budget_and_nothing_else(client, poster, worker):
    task = await post_task(client, poster, claim_mode="instant")
    for credits in (1, 119, 121):
        refused = await claim(client, worker, task["id"], proposed_credits=credits)
        assert (refused.status_code, code(refused)) == (422, "INVALID_CREDITS"), refused.text
        assert "budget (120)" in refused.json()["error"]["message"]
    response = await claim(client, worker, task["id"], proposed_credits=120, message="on it")
    assert response.status_code == 201 and response.json()["data"]["message"] == "on it"


async def test_everyone_after_the_first_claim_is_told_it_was_taken(client, admin_key, poster, worker, rival):
    task = await post_task(client, poster, claim_mode="instant")
    await taken(client, worker, task["id"])
    late = await claim(client, rival, task["id"])
    assert (late.status_code, code(late)) == (409, "TASK_NOT_OPEN")
    error = late.json()["error"]
    assert "already taken" in error["message"] and "claimed" in error["message"]
    again = await claim(client, worker, task["id"])  # the winner itself cannot take it twice
    assert (again.status_code, code(again)) == (409, "TASK_NOT_OPEN")


async def test_the_bid_rules_still_apply_to_an_instant_task(client, admin_key, poster):
    task = await post_task(client, poster, claim_mode="instant")
    own = await claim(client, poster, task["id"])
    assert (own.status_code, code(own)) == (409, "SELF_CLAIM")
    missing = await claim(client, poster, 999_999)
    assert (missing.status_code, code(missing)) == (404, "TASK_NOT_FOUND")


async def test_an_instant_tasks_claim_cannot_be_accepted_or_withdrawn(client, poster, worker):
    task = await post_task(client, poster, claim_mode="instant")
    made = await taken(client, worker, task["id"])
    accepting = await act(client, poster, f"/{task['id']}/claims/{made['id']}/accept")
    assert (accepting.status_code, code(accepting)) == (409, "INVALID_STATUS")
    assert "instant" in accepting.json()["error"]["message"]
    withdrawing = await act(client, worker, f"/{task['id']}/claims/{made['id']}/withdraw")
    assert (withdrawing.status_code, code(withdrawing)) == (409, "INVALID_STATUS")
    assert (await get_task(client, poster, task["id"]))["claimed_by_agent_id"] == worker["id"]


async def test_a_bid_on_a_task_in_bid_mode_still_names_its_price(client, poster, worker):
    task = await post_task(client, poster)
    refused = await claim(client, worker, task["id"])
    assert (refused.status_code, code(refused)) == (422, "VALIDATION_ERROR")
    assert "proposed_credits" in refused.json()["error"]["message"]
    assert await claims_of(client, poster, task["id"]) == {}


async def test_bulk_claims_apply_the_rule_per_item(client, poster, worker):
    bidding = await post_task(client, poster)
    instant = await post_task(client, poster, claim_mode="instant")
    items = [{"task_id": bidding["id"]}, {"task_id": instant["id"]}, {"task_id": bidding["id"], "proposed_credits": 70}]
    response = await client.post(f"{TASKS}/bulk/claims", json={"claims": items}, headers=bearer(worker["api_key"]))
    assert response.status_code == 200, response.text
    results = response.json()["data"]["results"]
    assert [(r["ok"], r.get("error", {}).get("code")) for r in results] == [
        (False, "VALIDATION_ERROR"),
        (True, None),
        (True, None),
    ]
    assert (await get_task(client, poster, instant["id"]))["status"] == "claimed"
    assert set((await claims_of(client, poster, bidding["id"])).values()) == {"pending"}
    late = [{"task_id": instant["id"]}, {"task_id": instant["id"], "proposed_credits": 5}]
    again = await client.post(f"{TASKS}/bulk/claims", json={"claims": late}, headers=bearer(worker["api_key"]))
    assert [r["error"]["code"] for r in again.json()["data"]["results"]] == ["TASK_NOT_OPEN", "TASK_NOT_OPEN"]


async def test_an_instant_task_is_worked_and_paid_at_its_budget(client, poster, worker):
    task = await post_task(client, poster, claim_mode="instant")
    await taken(client, worker, task["id"])
    before = await balance(client, worker)
    delivered = await deliver(client, worker, task["id"])
    assert delivered.status_code == 201, delivered.text
    accepted = await act(client, poster, f"/{task['id']}/deliverables/{delivered.json()['data']['id']}/accept")
    assert accepted.status_code == 200, accepted.text
    assert await balance(client, worker) - before == 120 - 12  # the budget less the 10 % fee


async def test_a_rolled_back_instant_task_goes_to_the_next_claim_with_full_revision_rounds(
    client, poster, worker, rival
):
    task = await post_task(client, poster, claim_mode="instant", max_revisions=1)
    await taken(client, worker, task["id"])
    first = await deliver(client, worker, task["id"])
    assert first.json()["data"]["revision_number"] == 1
    revision = {"revision_notes": "more, please"}
    assert (
        await act(client, poster, f"/{task['id']}/deliverables/{first.json()['data']['id']}/revision", revision)
    ).status_code == 200
    rolled = await act(client, poster, f"/{task['id']}/rollback")
    assert rolled.status_code == 200, rolled.text
    assert set((await claims_of(client, poster, task["id"])).values()) == {"rejected"}
    made = await taken(client, rival, task["id"])
    assert made["status"] == "accepted"
    numbers = []
    for _ in range(2):  # both of the new assignment's deliveries, though the first worker used one of its own
        delivered = await deliver(client, rival, task["id"])
        assert delivered.status_code == 201, delivered.text
        numbers.append(delivered.json()["data"]["revision_number"])
        if len(numbers) == 1:
            path = f"/{task['id']}/deliverables/{delivered.json()['data']['id']}/revision"
            assert (await act(client, poster, path, revision)).status_code == 200
    assert numbers == [1, 2]


# --- directed tasks -------------------------------------------------------------------------------------------------


async def test_a_directed_task_is_not_found_on_every_write_path_by_agents_it_is_not_directed_at(
    client, poster, worker, rival
):
    task = await post_task(client, poster, claim_mode="instant", eligible_agent_ids=[worker["id"]])
    for body in ({}, {"proposed_credits": 120}):
        hidden = await claim(client, rival, task["id"], **body)
        assert (hidden.status_code, code(hidden)) == (404, "TASK_NOT_FOUND"), hidden.text
    bulk = await client.post(
        f"{TASKS}/bulk/claims", json={"claims": [{"task_id": task["id"]}]}, headers=bearer(rival["api_key"])
    )
    assert bulk.json()["data"]["results"][0]["error"]["code"] == "TASK_NOT_FOUND"
    made = await taken(client, worker, task["id"])
    paths = [
        (f"/{task['id']}/claims/{made['id']}/withdraw", None),
        (f"/{task['id']}/claims/{made['id']}/accept", None),
        (f"/{task['id']}/deliverables", {"content": "mine"}),
        (f"/{task['id']}/cancel", None),
        (f"/{task['id']}/rollback", None),
    ]
    for path, body in paths:
        response = await act(client, rival, path, body)
        assert (response.status_code, code(response)) == (404, "TASK_NOT_FOUND"), (path, response.text)
    for path in (f"{TASKS}/{task['id']}/claims", f"{TASKS}/{task['id']}/deliverables"):
        listed = await client.get(path, headers=bearer(rival["api_key"]))
        assert (listed.status_code, code(listed)) == (404, "TASK_NOT_FOUND"), path
    # Its eligible agent works on it as on any task.
    assert (await deliver(client, worker, task["id"])).status_code == 201


async def test_a_directed_task_in_bid_mode_takes_bids_from_its_agents_only(client, poster, worker, rival):
    task = await post_task(client, poster, eligible_agent_ids=[worker["id"], rival["id"]])
    placed = await bid(client, worker, task["id"], 90)
    other = await bid(client, rival, task["id"], 80)
    accepted = await act(client, poster, f"/{task['id']}/claims/{other['id']}/accept")
    assert accepted.status_code == 200, accepted.text
    assert await claims_of(client, poster, task["id"]) == {placed["id"]: "rejected", other["id"]: "accepted"}
