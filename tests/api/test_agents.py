"""/api/v1/agents: the calling agent's profile and credits, public profiles, self-registration."""

from __future__ import annotations

import re
from datetime import datetime

import httpx
import pytest

from domain.keys import hash_key
from tests.conftest import bearer

ME_FIELDS = {
    "id",
    "name",
    "description",
    "capabilities",
    "category_ids",
    "hourly_rate_credits",
    "status",
    "reputation_score",
    "tasks_completed",
    "avg_rating",
    "operator",
    "created_at",
}
PUBLIC_FIELDS = {
    "id",
    "name",
    "description",
    "capabilities",
    "status",
    "reputation_score",
    "tasks_completed",
    "avg_rating",
    "recent_reviews",
    "created_at",
}
REGISTERED_FIELDS = {"id", "name", "api_key", "verification_code", "profile_url", "status", "created_at"}
TRANSACTION_FIELDS = {"id", "amount", "type", "kind", "task_id", "description", "balance_after", "created_at"}
SECRET_WORDS = ("key", "hash", "secret", "verification", "token", "password")


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


def assert_no_secrets(response: httpx.Response, api_key: str) -> None:
    data = response.json()["data"]
    assert not [field for field in data if any(word in field.lower() for word in SECRET_WORDS)]
    assert api_key not in response.text
    assert api_key[:14] not in response.text
    assert hash_key(api_key) not in response.text


async def patch_me(client, agent: dict, body: dict) -> httpx.Response:
    return await client.patch("/api/v1/agents/me", json=body, headers=bearer(agent["api_key"]))


async def get_me(client, agent: dict) -> dict:
    return ok(await client.get("/api/v1/agents/me", headers=bearer(agent["api_key"])))


# GET /agents/me


async def test_me_returns_exactly_the_documented_fields(client, agent):
    data = await get_me(client, agent)
    assert set(data) == ME_FIELDS


async def test_me_returns_the_agent_as_created(client, operator, agent):
    data = await get_me(client, agent)
    assert data["id"] == agent["id"]
    assert data["name"] == "Worker"
    assert data["description"] == "Writes Python"
    assert data["capabilities"] == ["python"]
    assert data["category_ids"] == []
    assert data["hourly_rate_credits"] is None
    assert data["status"] == "active"
    assert data["tasks_completed"] == 0
    assert isinstance(data["reputation_score"], int | float)
    assert data["avg_rating"] is None
    assert data["operator"] == {"id": operator["id"], "name": operator["name"]}
    assert is_timestamp(data["created_at"])


async def test_me_exposes_no_key_hash_or_secret(client, agent):
    response = await client.get("/api/v1/agents/me", headers=bearer(agent["api_key"]))
    assert_no_secrets(response, agent["api_key"])


# PATCH /agents/me


async def test_patch_updates_each_field(client, agent):
    body = {
        "name": "Renamed",
        "description": "Now writes Rust",
        "capabilities": ["rust", "go"],
        "category_ids": [1, 3],
        "hourly_rate_credits": 25,
    }
    data = ok(await patch_me(client, agent, body))
    assert set(data) == ME_FIELDS
    assert {k: data[k] for k in body} == body


async def test_patch_persists(client, agent):
    ok(await patch_me(client, agent, {"description": "Persisted description"}))
    assert (await get_me(client, agent))["description"] == "Persisted description"


async def test_patch_leaves_unnamed_fields_unchanged(client, agent):
    before = await get_me(client, agent)
    after = ok(await patch_me(client, agent, {"hourly_rate_credits": 7}))
    assert after["hourly_rate_credits"] == 7
    assert {k: v for k, v in after.items() if k != "hourly_rate_credits"} == {
        k: v for k, v in before.items() if k != "hourly_rate_credits"
    }


async def test_patch_can_clear_the_hourly_rate(client, agent):
    ok(await patch_me(client, agent, {"hourly_rate_credits": 10}))
    data = ok(await patch_me(client, agent, {"hourly_rate_credits": None}))
    assert data["hourly_rate_credits"] is None


async def test_patch_accepts_a_zero_hourly_rate(client, agent):
    assert ok(await patch_me(client, agent, {"hourly_rate_credits": 0}))["hourly_rate_credits"] == 0


async def test_patch_can_empty_the_capabilities(client, agent):
    assert ok(await patch_me(client, agent, {"capabilities": []}))["capabilities"] == []


async def test_patch_response_exposes_no_key_hash_or_secret(client, agent):
    response = await patch_me(client, agent, {"name": "Quiet"})
    ok(response)
    assert_no_secrets(response, agent["api_key"])


async def test_patch_with_an_empty_body_is_422(client, agent):
    error = failed(await patch_me(client, agent, {}), 422, "VALIDATION_ERROR")
    assert error["message"] == "No valid fields to update"


async def test_patch_with_an_unknown_category_is_404(client, agent):
    error = failed(await patch_me(client, agent, {"category_ids": [1, 999]}), 404, "CATEGORY_NOT_FOUND")
    assert "999" in error["message"]


async def test_a_refused_patch_changes_nothing(client, agent):
    before = await get_me(client, agent)
    failed(await patch_me(client, agent, {"name": "Changed", "category_ids": [999]}), 404, "CATEGORY_NOT_FOUND")
    assert await get_me(client, agent) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"hourly_rate_credits": -1}, "hourly_rate_credits"),
        ({"hourly_rate_credits": "ten"}, "hourly_rate_credits"),
        ({"hourly_rate_credits": 1.5}, "hourly_rate_credits"),
        pytest.param(
            {"hourly_rate_credits": "10"},
            "hourly_rate_credits",
            id="rate-as-numeric-string",
        ),
        ({"name": ""}, "name"),
        ({"description": ""}, "description"),
        ({"capabilities": [""]}, "capabilities"),
        ({"capabilities": "python"}, "capabilities"),
        ({"category_ids": [0]}, "category_ids"),
        ({"category_ids": ["one"]}, "category_ids"),
        ({"status": "active"}, "status"),
    ],
)
async def test_patch_with_an_invalid_field_is_422_naming_it(client, agent, body, field):
    error = failed(await patch_me(client, agent, body), 422, "VALIDATION_ERROR")
    assert field in error["message"]


async def test_patch_cannot_change_the_status(client, agent):
    failed(await patch_me(client, agent, {"status": "suspended"}), 422, "VALIDATION_ERROR")
    assert (await get_me(client, agent))["status"] == "active"


# GET /agents/{id}


async def test_public_profile_returns_exactly_the_documented_fields(client, operator, agent):
    other = await client.post(
        "/api/v1/operator/agents",
        json={"name": "Other", "description": "Reads", "capabilities": ["reading"]},
        headers=bearer(operator["api_key"]),
    )
    other_id = ok(other, 201)["id"]
    data = ok(await client.get(f"/api/v1/agents/{other_id}", headers=bearer(agent["api_key"])))
    assert set(data) == PUBLIC_FIELDS
    assert data["id"] == other_id
    assert data["name"] == "Other"
    assert data["description"] == "Reads"
    assert data["capabilities"] == ["reading"]
    assert data["status"] == "active"
    assert data["tasks_completed"] == 0
    assert data["avg_rating"] is None
    assert data["recent_reviews"] == []
    assert is_timestamp(data["created_at"])


async def test_an_agent_can_read_its_own_public_profile(client, agent):
    response = await client.get(f"/api/v1/agents/{agent['id']}", headers=bearer(agent["api_key"]))
    assert ok(response)["name"] == "Worker"
    assert_no_secrets(response, agent["api_key"])


async def test_public_profile_of_an_unknown_agent_is_404(client, agent):
    error = failed(
        await client.get("/api/v1/agents/987654321", headers=bearer(agent["api_key"])), 404, "AGENT_NOT_FOUND"
    )
    assert "987654321" in error["message"]


async def test_public_profile_shows_a_pending_agent_status(client, agent):
    registered = ok(
        await client.post("/api/v1/agents/register", json={"name": "newbie", "description": "Just arrived"}), 201
    )
    data = ok(await client.get(f"/api/v1/agents/{registered['id']}", headers=bearer(agent["api_key"])))
    assert data["status"] == "pending_claim"


# GET /agents/me/credits


async def credits(client, agent: dict, query: str = "") -> httpx.Response:
    return await client.get(f"/api/v1/agents/me/credits{query}", headers=bearer(agent["api_key"]))


async def grant(client, admin_key: str, operator: dict, amount: int, reason: str = "test") -> dict:
    response = await client.post(
        f"/api/v1/admin/operators/{operator['id']}/credits",
        json={"amount": amount, "reason": reason},
        headers=bearer(admin_key),
    )
    return ok(response, 201)


async def test_credits_show_the_operator_balance_and_no_escrow(client, agent):
    data = ok(await credits(client, agent))
    assert set(data) == {"credit_balance", "escrow_held", "recent_transactions"}
    assert data["credit_balance"] == 600
    assert data["escrow_held"] == 0


async def test_credit_transactions_have_the_documented_fields(client, agent):
    transactions = ok(await credits(client, agent))["recent_transactions"]
    assert len(transactions) == 2
    for transaction in transactions:
        assert set(transaction) == TRANSACTION_FIELDS
        assert isinstance(transaction["id"], int)
        assert transaction["task_id"] is None
        assert is_timestamp(transaction["created_at"])


async def test_credit_history_lists_the_bonuses_newest_first(client, agent):
    transactions = ok(await credits(client, agent))["recent_transactions"]
    agent_bonus, operator_bonus = transactions
    assert agent_bonus["id"] > operator_bonus["id"]
    assert (agent_bonus["amount"], agent_bonus["type"], agent_bonus["kind"]) == (100, "bonus", "agent_bonus")
    assert agent_bonus["balance_after"] == 600
    assert "Worker" in agent_bonus["description"]
    assert (operator_bonus["amount"], operator_bonus["type"], operator_bonus["kind"]) == (
        500,
        "bonus",
        "operator_bonus",
    )
    assert operator_bonus["balance_after"] == 500
    assert operator_bonus["description"]


async def test_credit_history_names_admin_grants_and_debits(client, admin_key, operator, agent):
    await grant(client, admin_key, operator, 50, "Top-up")
    await grant(client, admin_key, operator, -20, "Correction")
    debit, deposit = ok(await credits(client, agent))["recent_transactions"][:2]
    assert (debit["amount"], debit["type"], debit["kind"], debit["description"]) == (
        -20,
        "debit",
        "admin_debit",
        "Correction",
    )
    assert debit["balance_after"] == 630
    assert (deposit["amount"], deposit["type"], deposit["kind"], deposit["description"]) == (
        50,
        "deposit",
        "admin_grant",
        "Top-up",
    )
    assert deposit["balance_after"] == 650


async def test_balance_after_chains_from_oldest_to_newest(client, admin_key, operator, agent):
    for amount in (10, -5, 30):
        await grant(client, admin_key, operator, amount)
    data = ok(await credits(client, agent, "?limit=100"))
    oldest_first = list(reversed(data["recent_transactions"]))
    running = 0
    for transaction in oldest_first:
        running += transaction["amount"]
        assert transaction["balance_after"] == running
    assert running == data["credit_balance"]


async def test_agents_of_one_operator_share_its_wallet(client, operator, agent):
    second = ok(
        await client.post(
            "/api/v1/operator/agents",
            json={"name": "Second", "description": "Also works"},
            headers=bearer(operator["api_key"]),
        ),
        201,
    )
    mine = ok(await credits(client, agent))
    theirs = ok(await credits(client, second))
    assert mine["credit_balance"] == theirs["credit_balance"] == 700
    assert mine["recent_transactions"] == theirs["recent_transactions"]


async def test_credit_pages_concatenate_to_the_full_history(client, admin_key, operator, agent):
    for amount in (1, 2, 3, 4):
        await grant(client, admin_key, operator, amount)
    full = ok(await credits(client, agent, "?limit=100"))["recent_transactions"]
    assert len(full) == 6
    ids = [t["id"] for t in full]
    assert ids == sorted(ids, reverse=True)

    pages: list[httpx.Response] = []
    query = "?limit=1"
    while True:
        response = await credits(client, agent, query)
        ok(response)
        pages.append(response)
        cursor = response.json()["meta"]["cursor"]
        if cursor is None:
            break
        query = f"?limit=1&cursor={cursor}"
        assert len(pages) <= 10, "pagination does not end"

    paged = [t for page in pages for t in page.json()["data"]["recent_transactions"]]
    assert paged == full
    assert len({t["id"] for t in paged}) == len(paged)
    for page in pages[:-1]:
        assert page.json()["meta"]["has_more"] is True
        assert page.json()["meta"]["count"] == 1
    last = pages[-1].json()["meta"]
    assert (last["cursor"], last["has_more"], last["count"]) == (None, False, 1)


async def test_every_credit_page_carries_the_balance(client, admin_key, operator, agent):
    await grant(client, admin_key, operator, 9)
    first = await credits(client, agent, "?limit=1")
    cursor = first.json()["meta"]["cursor"]
    second = ok(await credits(client, agent, f"?limit=1&cursor={cursor}"))
    assert ok(first)["credit_balance"] == second["credit_balance"] == 609
    assert second["escrow_held"] == 0


async def test_credit_history_defaults_to_ten_entries(client, admin_key, operator, agent):
    for amount in range(1, 11):
        await grant(client, admin_key, operator, amount)
    response = await credits(client, agent)
    assert len(ok(response)["recent_transactions"]) == 10
    meta = response.json()["meta"]
    assert (meta["has_more"], meta["count"]) == (True, 10)
    assert meta["cursor"]


async def test_credit_history_that_fits_has_no_cursor(client, agent):
    meta = (await credits(client, agent, "?limit=2")).json()["meta"]
    assert (meta["cursor"], meta["has_more"], meta["count"]) == (None, False, 2)


# POST /agents/register


async def register(client, name: str = "Self-Made_1", description: str = "Signs itself up") -> httpx.Response:
    return await client.post("/api/v1/agents/register", json={"name": name, "description": description})


async def test_register_returns_201_with_the_documented_fields(client):
    data = ok(await register(client), 201)
    assert set(data) == REGISTERED_FIELDS
    assert data["status"] == "pending_claim"
    assert is_timestamp(data["created_at"])


async def test_register_stores_the_name_lower_cased(client, agent):
    data = ok(await register(client, name="Self-Made_1"), 201)
    assert data["name"] == "self-made_1"
    profile = ok(await client.get(f"/api/v1/agents/{data['id']}", headers=bearer(agent["api_key"])))
    assert profile["name"] == "self-made_1"
    assert profile["description"] == "Signs itself up"


async def test_register_returns_an_agent_key_and_a_hive_code(client):
    data = ok(await register(client), 201)
    assert re.fullmatch(r"th_agent_[0-9a-f]{64}", data["api_key"])
    assert re.fullmatch(r"hive-[0-9A-F]+", data["verification_code"])


async def test_register_returns_the_profile_url(client):
    data = ok(await register(client), 201)
    assert data["profile_url"].endswith(f"/api/v1/agents/{data['id']}")
    assert data["profile_url"].startswith("http")


async def test_each_registration_gets_its_own_key_and_code(client):
    first = ok(await register(client, name="twin-a"), 201)
    second = ok(await register(client, name="twin-b"), 201)
    assert first["id"] != second["id"]
    assert first["api_key"] != second["api_key"]
    assert first["verification_code"] != second["verification_code"]


@pytest.mark.parametrize("name", ["abc", "a" * 30, "A_b-9", "123"])
async def test_register_accepts_names_matching_the_pattern(client, name):
    assert ok(await register(client, name=name), 201)["name"] == name.lower()


@pytest.mark.parametrize("name", ["ab", "a" * 31, "has space", "dot.name", "émile", "", "semi;colon", "new\nline"])
async def test_register_refuses_names_outside_the_pattern(client, name):
    error = failed(await register(client, name=name), 422, "VALIDATION_ERROR")
    assert "name" in error["message"]


async def test_register_refuses_a_name_with_a_trailing_newline(client):
    error = failed(await register(client, name="abc\n"), 422, "VALIDATION_ERROR")
    assert "name" in error["message"]


@pytest.mark.parametrize("description", ["abcde", "d" * 500])
async def test_register_accepts_descriptions_of_5_to_500_characters(client, description):
    assert ok(await register(client, description=description), 201)["status"] == "pending_claim"


@pytest.mark.parametrize("description", ["", "abcd", "d" * 501])
async def test_register_refuses_descriptions_outside_5_to_500(client, description):
    error = failed(await register(client, description=description), 422, "VALIDATION_ERROR")
    assert "description" in error["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"description": "No name given"}, "name"),
        ({"name": "noname"}, "description"),
        ({"name": "extra", "description": "Has extra", "operator_id": 1}, "operator_id"),
        ({"name": 12345, "description": "Numeric name"}, "name"),
    ],
)
async def test_register_refuses_an_invalid_body_naming_the_field(client, body, field):
    error = failed(await client.post("/api/v1/agents/register", json=body), 422, "VALIDATION_ERROR")
    assert field in error["message"]
