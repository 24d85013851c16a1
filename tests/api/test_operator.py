"""/api/v1/operator: the operator's profile, its agents (create, list, keys, pause/resume, claim) and its wallet."""

from __future__ import annotations

import re
from datetime import datetime

import httpx
import pytest

from tests.conftest import bearer

OPERATOR_FIELDS = {"id", "name", "credit_balance", "agents_count", "created_at"}
MANAGED_FIELDS = {
    "id",
    "name",
    "description",
    "capabilities",
    "category_ids",
    "hourly_rate_credits",
    "status",
    "reputation_score",
    "tasks_completed",
    "api_key_prefix",
    "created_at",
}
TRANSACTION_FIELDS = {"id", "amount", "type", "kind", "task_id", "description", "balance_after", "created_at"}
AGENT_KEY = re.compile(r"^th_agent_[0-9a-f]{64}$")


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["ok"] is True
    return body["data"]


def failed(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["ok"] is False
    assert body["error"]["code"] == code, body["error"]
    assert body["error"]["suggestion"]
    return body["error"]


def is_timestamp(value: str) -> bool:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


@pytest.fixture
async def other_operator(client, admin_key) -> dict:
    response = await client.post("/api/v1/admin/operators", json={"name": "Rival"}, headers=bearer(admin_key))
    return ok(response, 201)


async def me(client, operator: dict) -> dict:
    return ok(await client.get("/api/v1/operator/me", headers=bearer(operator["api_key"])))


async def create_agent(client, operator: dict, **fields) -> httpx.Response:
    body = {"name": "Helper", "description": "Helps out", **fields}
    return await client.post("/api/v1/operator/agents", json=body, headers=bearer(operator["api_key"]))


async def act(client, operator: dict, agent_id: int | str, action: str) -> httpx.Response:
    return await client.post(f"/api/v1/operator/agents/{agent_id}/{action}", headers=bearer(operator["api_key"]))


async def list_agents(client, operator: dict, query: str = "") -> httpx.Response:
    return await client.get(f"/api/v1/operator/agents{query}", headers=bearer(operator["api_key"]))


async def agent_status(client, agent: dict) -> int:
    return (await client.get("/api/v1/agents/me", headers=bearer(agent["api_key"]))).status_code


async def register(client, name: str = "stray-bot") -> dict:
    response = await client.post("/api/v1/agents/register", json={"name": name, "description": "Waiting for a home"})
    return ok(response, 201)


async def claim(client, operator: dict, code: str) -> httpx.Response:
    return await client.post(
        "/api/v1/operator/agents/claim", json={"verification_code": code}, headers=bearer(operator["api_key"])
    )


# GET /operator/me


async def test_me_returns_exactly_the_documented_fields(client, operator):
    data = await me(client, operator)
    assert set(data) == OPERATOR_FIELDS
    assert data["id"] == operator["id"]
    assert data["name"] == "Acme"
    assert is_timestamp(data["created_at"])


async def test_a_new_operator_has_500_credits_and_no_agents(client, operator):
    data = await me(client, operator)
    assert (data["credit_balance"], data["agents_count"]) == (500, 0)


async def test_me_counts_the_agents_and_their_bonuses(client, operator, agent):
    ok(await create_agent(client, operator), 201)
    data = await me(client, operator)
    assert (data["credit_balance"], data["agents_count"]) == (700, 2)


# POST /operator/agents


async def test_create_agent_returns_201_with_the_key_once(client, operator):
    data = ok(await create_agent(client, operator, capabilities=["sql"], category_ids=[4], hourly_rate_credits=12), 201)
    assert set(data) == MANAGED_FIELDS | {"api_key"}
    assert AGENT_KEY.match(data["api_key"])
    assert data["api_key_prefix"] == data["api_key"][:14]
    assert data["name"] == "Helper"
    assert data["description"] == "Helps out"
    assert data["capabilities"] == ["sql"]
    assert data["category_ids"] == [4]
    assert data["hourly_rate_credits"] == 12
    assert data["status"] == "active"
    assert data["tasks_completed"] == 0
    assert is_timestamp(data["created_at"])


async def test_create_agent_defaults_the_optional_fields(client, operator):
    data = ok(await create_agent(client, operator), 201)
    assert (data["capabilities"], data["category_ids"], data["hourly_rate_credits"]) == ([], [], None)


async def test_a_created_agent_key_works_at_once(client, operator):
    data = ok(await create_agent(client, operator), 201)
    response = await client.get("/api/v1/agents/me", headers=bearer(data["api_key"]))
    assert ok(response)["id"] == data["id"]


async def test_create_agent_gives_a_100_credit_bonus(client, operator):
    data = ok(await create_agent(client, operator), 201)
    assert (await me(client, operator))["credit_balance"] == 600
    newest = ok(await client.get("/api/v1/operator/credits", headers=bearer(operator["api_key"])))
    bonus = newest["recent_transactions"][0]
    assert (bonus["amount"], bonus["type"], bonus["kind"]) == (100, "bonus", "agent_bonus")
    assert data["name"] in bonus["description"]


async def test_the_key_is_not_shown_again_in_the_list(client, operator, agent):
    response = await list_agents(client, operator)
    (listed,) = ok(response)
    assert set(listed) == MANAGED_FIELDS
    assert agent["api_key"] not in response.text
    assert listed["api_key_prefix"] == agent["api_key"][:14]


async def test_create_agent_with_an_unknown_category_is_404_and_creates_nothing(client, operator):
    failed(await create_agent(client, operator, category_ids=[999]), 404, "CATEGORY_NOT_FOUND")
    data = await me(client, operator)
    assert (data["credit_balance"], data["agents_count"]) == (500, 0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"description": "No name"}, "name"),
        ({"name": "No description"}, "description"),
        ({"name": "", "description": "Empty name"}, "name"),
        ({"name": "Rate", "description": "Negative", "hourly_rate_credits": -1}, "hourly_rate_credits"),
        ({"name": "Caps", "description": "Not a list", "capabilities": "python"}, "capabilities"),
        ({"name": "Extra", "description": "Unknown", "status": "active"}, "status"),
    ],
)
async def test_create_agent_with_an_invalid_body_is_422_naming_the_field(client, operator, body, field):
    response = await client.post("/api/v1/operator/agents", json=body, headers=bearer(operator["api_key"]))
    error = failed(response, 422, "VALIDATION_ERROR")
    assert field in error["message"]
    assert (await me(client, operator))["agents_count"] == 0


# GET /operator/agents


async def test_list_agents_returns_the_operators_agents_oldest_first(client, operator, agent):
    second = ok(await create_agent(client, operator, name="Second"), 201)
    response = await list_agents(client, operator)
    listed = ok(response)
    assert [a["id"] for a in listed] == [agent["id"], second["id"]]
    meta = response.json()["meta"]
    assert (meta["cursor"], meta["has_more"], meta["count"]) == (None, False, 2)


async def test_list_agents_shows_only_the_callers_agents(client, operator, other_operator, agent):
    ok(await create_agent(client, other_operator, name="Theirs"), 201)
    assert [a["id"] for a in ok(await list_agents(client, operator))] == [agent["id"]]
    assert [a["name"] for a in ok(await list_agents(client, other_operator))] == ["Theirs"]


async def test_list_agents_is_empty_for_a_new_operator(client, operator):
    response = await list_agents(client, operator)
    assert ok(response) == []
    assert response.json()["meta"]["count"] == 0


async def test_list_agents_pages_concatenate_without_duplicates(client, operator):
    created = [ok(await create_agent(client, operator, name=f"A{i}"), 201)["id"] for i in range(5)]
    seen: list[int] = []
    metas: list[dict] = []
    query = "?limit=2"
    while True:
        response = await list_agents(client, operator, query)
        seen += [a["id"] for a in ok(response)]
        metas.append(response.json()["meta"])
        cursor = metas[-1]["cursor"]
        if cursor is None:
            break
        query = f"?limit=2&cursor={cursor}"
        assert len(metas) <= 10, "pagination does not end"
    assert seen == created
    assert [m["count"] for m in metas] == [2, 2, 1]
    assert [m["has_more"] for m in metas] == [True, True, False]


async def test_list_agents_shows_current_statuses(client, operator, agent):
    await act(client, operator, agent["id"], "pause")
    (listed,) = ok(await list_agents(client, operator))
    assert listed["status"] == "paused"


# POST /operator/agents/{id}/rotate-key


async def test_rotate_key_returns_a_new_working_key(client, operator, agent):
    data = ok(await act(client, operator, agent["id"], "rotate-key"))
    assert set(data) == MANAGED_FIELDS | {"api_key"}
    assert data["id"] == agent["id"]
    assert AGENT_KEY.match(data["api_key"])
    assert data["api_key"] != agent["api_key"]
    assert data["api_key_prefix"] == data["api_key"][:14]
    assert await agent_status(client, {"api_key": data["api_key"]}) == 200


async def test_rotate_key_stops_the_old_key(client, operator, agent):
    ok(await act(client, operator, agent["id"], "rotate-key"))
    assert await agent_status(client, agent) == 401


async def test_rotating_twice_leaves_only_the_last_key(client, operator, agent):
    first = ok(await act(client, operator, agent["id"], "rotate-key"))["api_key"]
    second = ok(await act(client, operator, agent["id"], "rotate-key"))["api_key"]
    assert await agent_status(client, agent) == 401
    assert await agent_status(client, {"api_key": first}) == 401
    assert await agent_status(client, {"api_key": second}) == 200


async def test_rotate_key_does_not_change_the_agent(client, operator, agent):
    data = ok(await act(client, operator, agent["id"], "rotate-key"))
    assert {k: data[k] for k in ("name", "description", "status")} == {
        "name": agent["name"],
        "description": agent["description"],
        "status": "active",
    }


# Pause and resume


async def test_pause_sets_paused(client, operator, agent):
    data = ok(await act(client, operator, agent["id"], "pause"))
    assert set(data) == MANAGED_FIELDS
    assert data["status"] == "paused"
    assert await agent_status(client, agent) == 403


async def test_pausing_a_paused_agent_is_harmless(client, operator, agent):
    ok(await act(client, operator, agent["id"], "pause"))
    assert ok(await act(client, operator, agent["id"], "pause"))["status"] == "paused"


async def test_resume_sets_active(client, operator, agent):
    ok(await act(client, operator, agent["id"], "pause"))
    data = ok(await act(client, operator, agent["id"], "resume"))
    assert data["status"] == "active"
    assert await agent_status(client, agent) == 200


async def test_resuming_an_active_agent_is_harmless(client, operator, agent):
    assert ok(await act(client, operator, agent["id"], "resume"))["status"] == "active"


async def test_resuming_a_suspended_agent_is_409(client, admin_key, operator, agent):
    ok(await client.post(f"/api/v1/admin/agents/{agent['id']}/suspend", headers=bearer(admin_key)))
    failed(await act(client, operator, agent["id"], "resume"), 409, "INVALID_STATUS")
    assert await agent_status(client, agent) == 403


async def test_pausing_a_suspended_agent_is_409(client, admin_key, operator, agent):
    ok(await client.post(f"/api/v1/admin/agents/{agent['id']}/suspend", headers=bearer(admin_key)))
    failed(await act(client, operator, agent["id"], "pause"), 409, "INVALID_STATUS")
    (listed,) = ok(await list_agents(client, operator))
    assert listed["status"] == "suspended"


# Another operator's agent, or no agent at all


@pytest.mark.parametrize("action", ["pause", "resume", "rotate-key"])
async def test_acting_on_another_operators_agent_is_404(client, other_operator, agent, action):
    error = failed(await act(client, other_operator, agent["id"], action), 404, "AGENT_NOT_FOUND")
    assert str(agent["id"]) in error["message"]
    assert await agent_status(client, agent) == 200


@pytest.mark.parametrize("action", ["pause", "resume", "rotate-key"])
async def test_another_operators_agent_looks_like_a_missing_one(client, other_operator, agent, action):
    theirs = (await act(client, other_operator, agent["id"], action)).json()["error"]
    missing = (await act(client, other_operator, 987654321, action)).json()["error"]
    assert theirs["code"] == missing["code"] == "AGENT_NOT_FOUND"
    assert theirs["suggestion"] == missing["suggestion"]
    assert theirs["message"].replace(str(agent["id"]), "N") == missing["message"].replace("987654321", "N")


@pytest.mark.parametrize("action", ["pause", "resume", "rotate-key"])
async def test_acting_on_an_unknown_agent_is_404(client, operator, action):
    failed(await act(client, operator, 987654321, action), 404, "AGENT_NOT_FOUND")


async def test_acting_on_an_unclaimed_agent_is_404(client, operator):
    registered = await register(client)
    failed(await act(client, operator, registered["id"], "rotate-key"), 404, "AGENT_NOT_FOUND")
    assert (await client.get("/api/v1/agents/me", headers=bearer(registered["api_key"]))).json()["error"][
        "code"
    ] == "PENDING_CLAIM"


# POST /operator/agents/claim


async def test_claim_makes_the_agent_active_and_the_operators(client, operator):
    registered = await register(client)
    data = ok(await claim(client, operator, registered["verification_code"]))
    assert set(data) == MANAGED_FIELDS
    assert data["id"] == registered["id"]
    assert data["name"] == "stray-bot"
    assert data["status"] == "active"
    assert [a["id"] for a in ok(await list_agents(client, operator))] == [registered["id"]]


async def test_claim_gives_a_100_credit_bonus(client, operator):
    registered = await register(client)
    ok(await claim(client, operator, registered["verification_code"]))
    data = await me(client, operator)
    assert (data["credit_balance"], data["agents_count"]) == (600, 1)
    statement = ok(await client.get("/api/v1/operator/credits", headers=bearer(operator["api_key"])))
    bonus = statement["recent_transactions"][0]
    assert (bonus["amount"], bonus["type"], bonus["kind"], bonus["balance_after"]) == (100, "bonus", "agent_bonus", 600)
    assert "stray-bot" in bonus["description"]


async def test_a_claimed_agent_can_be_managed(client, operator):
    registered = await register(client)
    ok(await claim(client, operator, registered["verification_code"]))
    assert ok(await act(client, operator, registered["id"], "pause"))["status"] == "paused"


async def test_claim_with_a_wrong_code_is_404(client, operator):
    await register(client)
    failed(await claim(client, operator, "hive-0000000000"), 404, "AGENT_NOT_FOUND")
    assert (await me(client, operator))["credit_balance"] == 500


async def test_claim_with_a_used_code_is_404(client, operator):
    registered = await register(client)
    ok(await claim(client, operator, registered["verification_code"]))
    failed(await claim(client, operator, registered["verification_code"]), 404, "AGENT_NOT_FOUND")
    assert (await me(client, operator))["credit_balance"] == 600


async def test_a_used_code_cannot_be_claimed_by_another_operator(client, operator, other_operator):
    registered = await register(client)
    ok(await claim(client, operator, registered["verification_code"]))
    failed(await claim(client, other_operator, registered["verification_code"]), 404, "AGENT_NOT_FOUND")
    assert ok(await list_agents(client, other_operator)) == []
    me_as_agent = ok(await client.get("/api/v1/agents/me", headers=bearer(registered["api_key"])))
    assert me_as_agent["operator"]["id"] == operator["id"]


async def test_a_suspended_unclaimed_agent_cannot_be_claimed(client, admin_key, operator):
    registered = await register(client)
    ok(await client.post(f"/api/v1/admin/agents/{registered['id']}/suspend", headers=bearer(admin_key)))
    failed(await claim(client, operator, registered["verification_code"]), 404, "AGENT_NOT_FOUND")
    assert (await me(client, operator))["credit_balance"] == 500
    refused = await client.get("/api/v1/agents/me", headers=bearer(registered["api_key"]))
    assert refused.json()["error"]["message"] == "Agent is suspended"


@pytest.mark.parametrize("body", [{}, {"verification_code": ""}, {"verification_code": 123}, {"code": "hive-1"}])
async def test_claim_with_an_invalid_body_is_422(client, operator, body):
    response = await client.post("/api/v1/operator/agents/claim", json=body, headers=bearer(operator["api_key"]))
    failed(response, 422, "VALIDATION_ERROR")


# GET /operator/credits


async def statement(client, operator: dict, query: str = "") -> httpx.Response:
    return await client.get(f"/api/v1/operator/credits{query}", headers=bearer(operator["api_key"]))


async def test_statement_has_balance_escrow_and_history(client, operator, agent):
    response = await statement(client, operator)
    data = ok(response)
    assert set(data) == {"credit_balance", "escrow_held", "recent_transactions"}
    assert (data["credit_balance"], data["escrow_held"]) == (600, 0)
    assert [t["amount"] for t in data["recent_transactions"]] == [100, 500]
    for transaction in data["recent_transactions"]:
        assert set(transaction) == TRANSACTION_FIELDS
    meta = response.json()["meta"]
    assert (meta["cursor"], meta["has_more"], meta["count"]) == (None, False, 2)


async def test_statement_matches_what_the_agents_see(client, operator, agent):
    mine = ok(await statement(client, operator, "?limit=10"))
    theirs = ok(await client.get("/api/v1/agents/me/credits", headers=bearer(agent["api_key"])))
    assert mine == theirs


async def test_statement_pages_concatenate_newest_first(client, admin_key, operator):
    for amount in (5, 6, 7):
        ok(
            await client.post(
                f"/api/v1/admin/operators/{operator['id']}/credits",
                json={"amount": amount, "reason": "grant"},
                headers=bearer(admin_key),
            ),
            201,
        )
    full = ok(await statement(client, operator, "?limit=100"))["recent_transactions"]
    assert [t["amount"] for t in full] == [7, 6, 5, 500]
    collected: list[dict] = []
    query = "?limit=3"
    pages = 0
    while True:
        response = await statement(client, operator, query)
        collected += ok(response)["recent_transactions"]
        pages += 1
        cursor = response.json()["meta"]["cursor"]
        if cursor is None:
            assert response.json()["meta"]["has_more"] is False
            break
        assert response.json()["meta"]["has_more"] is True
        query = f"?limit=3&cursor={cursor}"
        assert pages <= 10, "pagination does not end"
    assert collected == full
    assert pages == 2


async def test_statement_is_per_operator(client, operator, other_operator, agent):
    theirs = ok(await statement(client, other_operator))
    assert theirs["credit_balance"] == 500
    assert [t["amount"] for t in theirs["recent_transactions"]] == [500]
