"""/api/v1/admin: operators, credit grants and debits, agent suspension, the ledger's accounts."""

from __future__ import annotations

import re
from datetime import datetime

import httpx
import pytest

from domain.ledger import REVENUE_SHARDS
from tests.conftest import bearer

OPERATOR_CREATED_FIELDS = {"id", "name", "api_key", "credit_balance", "created_at"}
ADJUSTED_FIELDS = {"transfer_id", "operator_id", "amount", "balance_after"}
ACCOUNT_FIELDS = {"id", "kind", "operator_id", "task_id", "shard", "balance", "version"}
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


async def adjust(client, admin_key: str, operator_id: int | str, amount, reason: str = "test") -> httpx.Response:
    return await client.post(
        f"/api/v1/admin/operators/{operator_id}/credits",
        json={"amount": amount, "reason": reason},
        headers=bearer(admin_key),
    )


async def balance(client, operator: dict) -> int:
    response = await client.get("/api/v1/operator/me", headers=bearer(operator["api_key"]))
    return ok(response)["credit_balance"]


async def history(client, operator: dict) -> list[dict]:
    response = await client.get("/api/v1/operator/credits?limit=100", headers=bearer(operator["api_key"]))
    return ok(response)["recent_transactions"]


async def admin_action(client, admin_key: str, agent_id: int | str, action: str) -> httpx.Response:
    return await client.post(f"/api/v1/admin/agents/{agent_id}/{action}", headers=bearer(admin_key))


async def all_accounts(client, admin_key: str, query: str = "") -> list[dict]:
    """Every account, walking the pages."""
    accounts: list[dict] = []
    cursor = None
    for _ in range(1000):
        suffix = f"&cursor={cursor}" if cursor else ""
        response = await client.get(f"/api/v1/admin/accounts?limit=100{query}{suffix}", headers=bearer(admin_key))
        accounts += ok(response)
        cursor = response.json()["meta"]["cursor"]
        if cursor is None:
            return accounts
    raise AssertionError("pagination does not end")


# POST /admin/operators


async def test_create_operator_returns_201_with_key_and_500_credits(client, admin_key):
    response = await client.post("/api/v1/admin/operators", json={"name": "Globex"}, headers=bearer(admin_key))
    data = ok(response, 201)
    assert set(data) == OPERATOR_CREATED_FIELDS
    assert data["name"] == "Globex"
    assert data["credit_balance"] == 500
    assert re.fullmatch(r"th_op_[0-9a-f]{64}", data["api_key"])
    assert datetime.fromisoformat(data["created_at"].replace("Z", "+00:00")).tzinfo is not None


async def test_a_created_operator_key_works(client, operator):
    data = ok(await client.get("/api/v1/operator/me", headers=bearer(operator["api_key"])))
    assert data["id"] == operator["id"]
    assert data["credit_balance"] == 500


async def test_each_operator_gets_its_own_key(client, admin_key, operator):
    other = ok(await client.post("/api/v1/admin/operators", json={"name": "Acme"}, headers=bearer(admin_key)), 201)
    assert other["id"] != operator["id"]
    assert other["api_key"] != operator["api_key"]


async def test_the_welcome_bonus_is_in_the_history(client, operator):
    (bonus,) = await history(client, operator)
    assert (bonus["amount"], bonus["type"], bonus["kind"], bonus["balance_after"]) == (
        500,
        "bonus",
        "operator_bonus",
        500,
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "name"), ({"name": ""}, "name"), ({"name": "x" * 201}, "name"), ({"name": "A", "credits": 9}, "credits")],
)
async def test_create_operator_with_an_invalid_body_is_422(client, admin_key, body, field):
    response = await client.post("/api/v1/admin/operators", json=body, headers=bearer(admin_key))
    error = failed(response, 422, "VALIDATION_ERROR")
    assert field in error["message"]


# POST /admin/operators/{id}/credits


async def test_a_grant_returns_the_new_balance(client, admin_key, operator):
    data = ok(await adjust(client, admin_key, operator["id"], 250, "Prize"), 201)
    assert set(data) == ADJUSTED_FIELDS
    assert (data["operator_id"], data["amount"], data["balance_after"]) == (operator["id"], 250, 750)
    assert isinstance(data["transfer_id"], int)
    assert await balance(client, operator) == 750


async def test_a_debit_returns_the_new_balance(client, admin_key, operator):
    data = ok(await adjust(client, admin_key, operator["id"], -120, "Refund clawback"), 201)
    assert (data["amount"], data["balance_after"]) == (-120, 380)
    assert await balance(client, operator) == 380


async def test_grants_and_debits_appear_in_the_history(client, admin_key, operator):
    ok(await adjust(client, admin_key, operator["id"], 40, "Grant reason"), 201)
    ok(await adjust(client, admin_key, operator["id"], -15, "Debit reason"), 201)
    debit, grant, _ = await history(client, operator)
    assert (debit["amount"], debit["type"], debit["kind"], debit["description"], debit["balance_after"]) == (
        -15,
        "debit",
        "admin_debit",
        "Debit reason",
        525,
    )
    assert (grant["amount"], grant["type"], grant["kind"], grant["description"], grant["balance_after"]) == (
        40,
        "deposit",
        "admin_grant",
        "Grant reason",
        540,
    )


async def test_a_debit_down_to_zero_is_allowed(client, admin_key, operator):
    assert ok(await adjust(client, admin_key, operator["id"], -500), 201)["balance_after"] == 0


async def test_a_debit_below_zero_is_422_and_changes_nothing(client, admin_key, operator):
    before = await history(client, operator)
    error = failed(await adjust(client, admin_key, operator["id"], -501), 422, "INSUFFICIENT_CREDITS")
    assert "500" in error["message"]
    assert await balance(client, operator) == 500
    assert await history(client, operator) == before


async def test_a_refused_debit_leaves_the_ledger_balanced(client, admin_key, operator):
    failed(await adjust(client, admin_key, operator["id"], -10_000), 422, "INSUFFICIENT_CREDITS")
    accounts = await all_accounts(client, admin_key)
    assert sum(a["balance"] for a in accounts) == 0


async def test_an_amount_of_zero_is_422(client, admin_key, operator):
    error = failed(await adjust(client, admin_key, operator["id"], 0), 422, "VALIDATION_ERROR")
    assert "amount" in error["message"]
    assert await balance(client, operator) == 500


async def test_credits_for_an_unknown_operator_are_404(client, admin_key):
    error = failed(await adjust(client, admin_key, 987654321, 10), 404, "OPERATOR_NOT_FOUND")
    assert "987654321" in error["message"]


async def test_a_debit_for_an_unknown_operator_is_404(client, admin_key):
    failed(await adjust(client, admin_key, 987654321, -10), 404, "OPERATOR_NOT_FOUND")


@pytest.mark.parametrize("operator_id", ["abc", "0", "-3"])
async def test_credits_for_an_invalid_operator_id_are_400(client, admin_key, operator_id):
    failed(await adjust(client, admin_key, operator_id, 10), 400, "INVALID_PARAMETER")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": 10}, "reason"),
        ({"amount": 10, "reason": ""}, "reason"),
        ({"reason": "no amount"}, "amount"),
        pytest.param({"amount": "10", "reason": "string"}, "amount", id="amount-as-string"),
        ({"amount": 1.5, "reason": "float"}, "amount"),
        ({"amount": 1_000_000_001, "reason": "too big"}, "amount"),
        ({"amount": 10, "reason": "extra", "note": "x"}, "note"),
    ],
)
async def test_credits_with_an_invalid_body_are_422_naming_the_field(client, admin_key, operator, body, field):
    response = await client.post(
        f"/api/v1/admin/operators/{operator['id']}/credits", json=body, headers=bearer(admin_key)
    )
    error = failed(response, 422, "VALIDATION_ERROR")
    assert field in error["message"]
    assert await balance(client, operator) == 500


# Suspend and reactivate


async def test_suspend_returns_the_suspended_agent(client, admin_key, agent):
    data = ok(await admin_action(client, admin_key, agent["id"], "suspend"))
    assert set(data) == MANAGED_FIELDS
    assert (data["id"], data["status"]) == (agent["id"], "suspended")


async def test_suspending_twice_is_harmless(client, admin_key, agent):
    ok(await admin_action(client, admin_key, agent["id"], "suspend"))
    assert ok(await admin_action(client, admin_key, agent["id"], "suspend"))["status"] == "suspended"


async def test_a_paused_agent_can_be_suspended(client, admin_key, operator, agent):
    ok(await client.post(f"/api/v1/operator/agents/{agent['id']}/pause", headers=bearer(operator["api_key"])))
    assert ok(await admin_action(client, admin_key, agent["id"], "suspend"))["status"] == "suspended"


async def test_reactivate_returns_the_active_agent(client, admin_key, agent):
    ok(await admin_action(client, admin_key, agent["id"], "suspend"))
    data = ok(await admin_action(client, admin_key, agent["id"], "reactivate"))
    assert set(data) == MANAGED_FIELDS
    assert data["status"] == "active"


async def test_reactivating_an_active_agent_is_409(client, admin_key, agent):
    failed(await admin_action(client, admin_key, agent["id"], "reactivate"), 409, "INVALID_STATUS")


async def test_reactivating_a_paused_agent_is_409_and_leaves_it_paused(client, admin_key, operator, agent):
    ok(await client.post(f"/api/v1/operator/agents/{agent['id']}/pause", headers=bearer(operator["api_key"])))
    failed(await admin_action(client, admin_key, agent["id"], "reactivate"), 409, "INVALID_STATUS")
    listed = ok(await client.get("/api/v1/operator/agents", headers=bearer(operator["api_key"])))
    assert listed[0]["status"] == "paused"


async def test_a_suspended_unclaimed_agent_reactivates_to_pending_claim(client, admin_key):
    registered = ok(
        await client.post("/api/v1/agents/register", json={"name": "loner", "description": "Nobody's yet"}), 201
    )
    assert ok(await admin_action(client, admin_key, registered["id"], "suspend"))["status"] == "suspended"
    assert ok(await admin_action(client, admin_key, registered["id"], "reactivate"))["status"] == "pending_claim"


@pytest.mark.parametrize("action", ["suspend", "reactivate"])
async def test_an_unknown_agent_is_404(client, admin_key, action):
    failed(await admin_action(client, admin_key, 987654321, action), 404, "AGENT_NOT_FOUND")


@pytest.mark.parametrize("action", ["suspend", "reactivate"])
async def test_an_invalid_agent_id_is_400(client, admin_key, action):
    failed(await admin_action(client, admin_key, "abc", action), 400, "INVALID_PARAMETER")


# GET /admin/accounts


async def test_accounts_have_the_documented_fields(client, admin_key, operator):
    accounts = await all_accounts(client, admin_key)
    assert accounts
    for account in accounts:
        assert set(account) == ACCOUNT_FIELDS


async def test_accounts_are_listed_by_id(client, admin_key, operator):
    ids = [a["id"] for a in await all_accounts(client, admin_key)]
    assert ids == sorted(ids)
    assert len(ids) == len(set(ids))


async def test_accounts_include_the_operators_wallet(client, admin_key, operator):
    wallets = [a for a in await all_accounts(client, admin_key) if a["operator_id"] == operator["id"]]
    assert len(wallets) == 1
    wallet = wallets[0]
    assert (wallet["kind"], wallet["balance"], wallet["task_id"]) == ("operator_wallet", 500, None)


async def test_a_grant_moves_the_wallet_balance_and_version(client, admin_key, operator):
    (before,) = [a for a in await all_accounts(client, admin_key) if a["operator_id"] == operator["id"]]
    ok(await adjust(client, admin_key, operator["id"], 25), 201)
    (after,) = [a for a in await all_accounts(client, admin_key) if a["operator_id"] == operator["id"]]
    assert after["balance"] == before["balance"] + 25
    assert after["version"] > before["version"]


async def test_platform_issuance_balances_all_other_accounts(client, admin_key, operator, agent):
    ok(await adjust(client, admin_key, operator["id"], 77), 201)
    ok(await adjust(client, admin_key, operator["id"], -7), 201)
    accounts = await all_accounts(client, admin_key)
    (issuance,) = [a for a in accounts if a["kind"] == "platform_issuance"]
    others = sum(a["balance"] for a in accounts if a["id"] != issuance["id"])
    assert issuance["balance"] == -others
    assert issuance["balance"] < 0
    assert issuance["operator_id"] is None


@pytest.mark.parametrize("kind", ["operator_wallet", "platform_issuance", "platform_revenue", "task_escrow"])
async def test_the_kind_filter_returns_only_that_kind(client, admin_key, operator, kind):
    accounts = await all_accounts(client, admin_key, f"&kind={kind}")
    assert all(a["kind"] == kind for a in accounts)


async def test_the_kind_filter_finds_the_wallet_and_the_platform_accounts(client, admin_key, operator):
    wallets = await all_accounts(client, admin_key, "&kind=operator_wallet")
    assert operator["id"] in {a["operator_id"] for a in wallets}
    assert len(await all_accounts(client, admin_key, "&kind=platform_issuance")) == 1
    revenue = await all_accounts(client, admin_key, "&kind=platform_revenue")
    assert sorted(a["shard"] for a in revenue) == list(range(REVENUE_SHARDS))
    assert all(a["shard"] is None for a in wallets)


async def test_filtered_accounts_are_the_matching_subset(client, admin_key, operator):
    everything = await all_accounts(client, admin_key)
    wallets = await all_accounts(client, admin_key, "&kind=operator_wallet")
    assert wallets == [a for a in everything if a["kind"] == "operator_wallet"]


async def test_account_pages_concatenate_without_duplicates(client, admin_key, operator):
    for name in ("One", "Two", "Three"):
        ok(await client.post("/api/v1/admin/operators", json={"name": name}, headers=bearer(admin_key)), 201)
    everything = await all_accounts(client, admin_key)
    size = max(2, -(-len(everything) // 4))  # a few pages whatever the database already holds
    collected: list[dict] = []
    metas: list[dict] = []
    query = f"?limit={size}"
    while True:
        response = await client.get(f"/api/v1/admin/accounts{query}", headers=bearer(admin_key))
        collected += ok(response)
        metas.append(response.json()["meta"])
        if metas[-1]["cursor"] is None:
            break
        query = f"?limit={size}&cursor={metas[-1]['cursor']}"
        assert len(metas) <= 10, "pagination does not end"
    assert len(metas) > 1
    assert collected == everything
    assert all(m["has_more"] for m in metas[:-1])
    assert metas[-1]["has_more"] is False
    assert [m["count"] for m in metas] == [len(everything[i : i + size]) for i in range(0, len(everything), size)]


async def test_accounts_default_to_twenty_per_page(client, admin_key, operator):
    response = await client.get("/api/v1/admin/accounts", headers=bearer(admin_key))
    total = len(await all_accounts(client, admin_key))
    assert response.json()["meta"]["count"] == min(20, total)
    assert response.json()["meta"]["has_more"] is (total > 20)
