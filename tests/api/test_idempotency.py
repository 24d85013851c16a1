"""Idempotency-Key in process (reliability.md §1: IDEM-1, 3, 4, 5, 6, 9 and the stored-or-not rules).

Every test runs on the rolled-back `conn` transaction; effects are counted with SQL on that same connection.
"""

from __future__ import annotations

import json

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from app.services import idempotency
from tests.conftest import bearer

AGENT_BODY = {"name": "Twin", "description": "only once", "capabilities": ["python", "sql"]}
REPLAYED = "idempotency-replayed"


def keyed(api_key: str, key: str | bytes) -> dict:
    return {**bearer(api_key), "Idempotency-Key": key}


async def scalar(conn: psycopg.AsyncConnection, sql: str, *params: object) -> object:
    cursor = await conn.execute(sql, params)
    return (await cursor.fetchone())[0]


async def agents_of(conn: psycopg.AsyncConnection, operator_id: int) -> int:
    return await scalar(conn, "SELECT count(*) FROM agent WHERE operator_id = %s", operator_id)


async def transfers_of(conn: psycopg.AsyncConnection, operator_id: int) -> int:
    return await scalar(conn, "SELECT count(*) FROM transfer WHERE operator_id = %s", operator_id)


async def records_of(conn: psycopg.AsyncConnection, principal: str) -> int:
    return await scalar(conn, "SELECT count(*) FROM idempotency_key WHERE principal = %s", principal)


async def balance_of(conn: psycopg.AsyncConnection, operator_id: int) -> int:
    return await scalar(conn, "SELECT balance FROM account WHERE operator_id = %s", operator_id)


def error_code(response) -> str:
    body = response.json()
    assert body["ok"] is False, response.text
    return body["error"]["code"]


# IDEM-1 ----------------------------------------------------------------------------------------------------------


async def test_same_post_100_times_has_one_effect_and_identical_replays(client, conn, operator):
    before_transfers = await transfers_of(conn, operator["id"])
    headers = keyed(operator["api_key"], "idem-1-create-agent")
    responses = [await client.post("/api/v1/operator/agents", json=AGENT_BODY, headers=headers) for _ in range(100)]

    first = responses[0]
    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers
    assert all(r.status_code == 201 for r in responses)
    assert all(r.content == first.content for r in responses), "replays must be byte-identical"
    assert {r.headers["content-type"] for r in responses} == {first.headers["content-type"]}
    assert [r.headers.get(REPLAYED) for r in responses[1:]] == ["true"] * 99
    assert await agents_of(conn, operator["id"]) == 1
    assert await transfers_of(conn, operator["id"]) == before_transfers + 1  # one agent bonus
    listed = await client.get("/api/v1/operator/agents", headers=bearer(operator["api_key"]))
    assert [a["id"] for a in listed.json()["data"]] == [first.json()["data"]["id"]]


async def test_credit_grant_100_times_posts_one_transfer(client, conn, admin_key, operator):
    path = f"/api/v1/admin/operators/{operator['id']}/credits"
    before = await transfers_of(conn, operator["id"])
    headers = keyed(admin_key, "idem-1-grant")
    responses = [await client.post(path, json={"amount": 250, "reason": "grant"}, headers=headers) for _ in range(100)]

    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    assert sum(r.headers.get(REPLAYED) == "true" for r in responses) == 99
    assert await transfers_of(conn, operator["id"]) == before + 1
    assert await balance_of(conn, operator["id"]) == 500 + 250


# IDEM-3 and canonical JSON ------------------------------------------------------------------------------------------


async def test_changed_body_with_same_key_is_rejected_and_writes_nothing(client, conn, admin_key, operator):
    path = f"/api/v1/admin/operators/{operator['id']}/credits"
    headers = keyed(admin_key, "idem-3")
    first = await client.post(path, json={"amount": 100, "reason": "grant"}, headers=headers)
    assert first.status_code == 201, first.text
    transfers, records, balance = (
        await transfers_of(conn, operator["id"]),
        await scalar(conn, "SELECT count(*) FROM idempotency_key"),
        await balance_of(conn, operator["id"]),
    )

    changed = await client.post(path, json={"amount": 101, "reason": "grant"}, headers=headers)

    assert changed.status_code == 422
    assert error_code(changed) == "IDEMPOTENCY_KEY_MISMATCH"
    assert REPLAYED not in changed.headers
    assert await transfers_of(conn, operator["id"]) == transfers
    assert await scalar(conn, "SELECT count(*) FROM idempotency_key") == records
    assert await balance_of(conn, operator["id"]) == balance
    # The original request is still replayable with its own body.
    again = await client.post(path, json={"amount": 100, "reason": "grant"}, headers=headers)
    assert again.status_code == 201 and again.content == first.content and again.headers[REPLAYED] == "true"


async def test_changed_agent_body_with_same_key_creates_no_agent(client, conn, operator):
    headers = keyed(operator["api_key"], "idem-3-agent")
    assert (await client.post("/api/v1/operator/agents", json=AGENT_BODY, headers=headers)).status_code == 201

    changed = await client.post(
        "/api/v1/operator/agents", json={**AGENT_BODY, "description": "only twice"}, headers=headers
    )

    assert changed.status_code == 422 and error_code(changed) == "IDEMPOTENCY_KEY_MISMATCH"
    assert await agents_of(conn, operator["id"]) == 1


async def test_key_order_and_whitespace_do_not_change_the_request(client, conn, operator):
    headers = {**keyed(operator["api_key"], "idem-canonical"), "Content-Type": "application/json"}
    compact = json.dumps(AGENT_BODY, separators=(",", ":")).encode()
    reordered = b'{\n  "capabilities" : [ "python", "sql" ],\n\t"description": "only once",   "name":"Twin"\n}\n'
    assert json.loads(reordered) == AGENT_BODY and compact != reordered

    first = await client.post("/api/v1/operator/agents", content=compact, headers=headers)
    second = await client.post("/api/v1/operator/agents", content=reordered, headers=headers)

    assert first.status_code == 201, first.text
    assert second.status_code == 201 and second.headers[REPLAYED] == "true"
    assert second.content == first.content
    assert await agents_of(conn, operator["id"]) == 1


# IDEM-4 ----------------------------------------------------------------------------------------------------------


async def test_same_key_on_another_endpoint_is_rejected_without_leaking(client, conn, operator):
    headers = keyed(operator["api_key"], "idem-4")
    created = await client.post("/api/v1/operator/agents", json=AGENT_BODY, headers=headers)
    assert created.status_code == 201
    agent = created.json()["data"]
    secrets = [agent["api_key"], "only once"]

    other_endpoint = await client.post(
        "/api/v1/operator/agents/claim", json={"verification_code": "nope"}, headers=headers
    )
    other_path = await client.post(f"/api/v1/operator/agents/{agent['id']}/pause", headers=headers)

    for response in (other_endpoint, other_path):
        assert response.status_code == 422, response.text
        assert error_code(response) == "IDEMPOTENCY_KEY_MISMATCH"
        assert REPLAYED not in response.headers
        assert "data" not in response.json()
        assert not any(secret in response.text for secret in secrets)
    # Neither ran: the agent is still active and nothing else was written.
    status = await scalar(conn, "SELECT status FROM agent WHERE id = %s", agent["id"])
    assert status == "active"
    assert await agents_of(conn, operator["id"]) == 1


# IDEM-5 ----------------------------------------------------------------------------------------------------------


async def test_two_operators_with_the_same_key_value_are_independent(client, conn, admin_key, operator):
    other = await client.post("/api/v1/admin/operators", json={"name": "Globex"}, headers=bearer(admin_key))
    assert other.status_code == 201
    other = other.json()["data"]

    mine = await client.post(
        "/api/v1/operator/agents", json=AGENT_BODY, headers=keyed(operator["api_key"], "shared-key")
    )
    same_body = await client.post(
        "/api/v1/operator/agents", json=AGENT_BODY, headers=keyed(other["api_key"], "shared-key")
    )

    assert mine.status_code == same_body.status_code == 201
    assert REPLAYED not in same_body.headers
    assert same_body.json()["data"]["id"] != mine.json()["data"]["id"]
    assert mine.json()["data"]["api_key"] not in same_body.text
    assert await agents_of(conn, operator["id"]) == 1
    assert await agents_of(conn, other["id"]) == 1

    # A different body under the other operator's scope is no mismatch either.
    third = await client.post("/api/v1/admin/operators", json={"name": "Initech"}, headers=bearer(admin_key))
    third = third.json()["data"]
    different = await client.post(
        "/api/v1/operator/agents",
        json={"name": "Solo", "description": "different"},
        headers=keyed(third["api_key"], "shared-key"),
    )
    assert different.status_code == 201 and REPLAYED not in different.headers
    assert different.json()["data"]["name"] == "Solo"
    # Each scope replays its own response.
    replay = await client.post(
        "/api/v1/operator/agents", json=AGENT_BODY, headers=keyed(operator["api_key"], "shared-key")
    )
    assert replay.headers[REPLAYED] == "true" and replay.content == mine.content


# IDEM-6 ----------------------------------------------------------------------------------------------------------


async def test_expired_record_lets_the_key_run_as_new(client, conn, operator):
    headers = keyed(operator["api_key"], "idem-6")
    first = await client.post("/api/v1/operator/agents", json=AGENT_BODY, headers=headers)
    assert first.status_code == 201
    principal = f"operator:{operator['id']}"
    # 24 hours by database time (created_at is now(), the test's transaction start, so compare with the clock).
    expires_in = await scalar(
        conn,
        "SELECT expires_at - statement_timestamp() FROM idempotency_key WHERE principal = %s AND key = %s",
        principal,
        "idem-6",
    )
    assert 24 * 3600 - 60 < expires_in.total_seconds() <= 24 * 3600

    await conn.execute(
        "UPDATE idempotency_key SET expires_at = statement_timestamp() - interval '1 second'"
        " WHERE principal = %s AND key = %s",
        (principal, "idem-6"),
    )
    second = await client.post("/api/v1/operator/agents", json=AGENT_BODY, headers=headers)

    assert second.status_code == 201 and REPLAYED not in second.headers
    assert second.json()["data"]["id"] != first.json()["data"]["id"]
    assert await agents_of(conn, operator["id"]) == 2
    # The expired record was replaced by the new one, which replays from now on.
    assert await records_of(conn, principal) == 1
    third = await client.post("/api/v1/operator/agents", json=AGENT_BODY, headers=headers)
    assert third.headers[REPLAYED] == "true" and third.content == second.content


async def test_an_expired_record_no_longer_conflicts_with_a_new_body(client, conn, operator):
    headers = keyed(operator["api_key"], "idem-6-body")
    assert (await client.post("/api/v1/operator/agents", json=AGENT_BODY, headers=headers)).status_code == 201
    await conn.execute(
        "UPDATE idempotency_key SET expires_at = statement_timestamp() - interval '1 second' WHERE key = %s",
        ("idem-6-body",),
    )
    changed = await client.post(
        "/api/v1/operator/agents", json={"name": "Other", "description": "new request"}, headers=headers
    )
    assert changed.status_code == 201 and changed.json()["data"]["name"] == "Other"


async def test_after_cleanup_an_expired_key_runs_as_new(client, conn, operator):
    headers = keyed(operator["api_key"], "idem-6-gc")
    first = await client.post("/api/v1/operator/agents", json=AGENT_BODY, headers=headers)
    assert first.status_code == 201
    await conn.execute(
        "UPDATE idempotency_key SET expires_at = statement_timestamp() - interval '1 second' WHERE key = %s",
        ("idem-6-gc",),
    )
    assert await idempotency.delete_expired(conn) >= 1

    second = await client.post("/api/v1/operator/agents", json=AGENT_BODY, headers=headers)

    assert second.status_code == 201 and REPLAYED not in second.headers
    assert second.json()["data"]["id"] != first.json()["data"]["id"]
    assert await agents_of(conn, operator["id"]) == 2


async def test_delete_expired_removes_expired_records_only(client, conn, operator):
    for key in ("gc-old-1", "gc-old-2", "gc-live"):
        body = {"name": key, "description": "gc"}
        response = await client.post("/api/v1/operator/agents", json=body, headers=keyed(operator["api_key"], key))
        assert response.status_code == 201
    await conn.execute(
        "UPDATE idempotency_key SET expires_at = statement_timestamp() - interval '1 second'"
        " WHERE principal = %s AND key IN ('gc-old-1', 'gc-old-2')",
        (f"operator:{operator['id']}",),
    )
    live_before = await scalar(conn, "SELECT count(*) FROM idempotency_key WHERE expires_at > statement_timestamp()")
    expired_before = await scalar(
        conn, "SELECT count(*) FROM idempotency_key WHERE expires_at <= statement_timestamp()"
    )
    assert expired_before >= 2

    removed = await idempotency.delete_expired(conn)

    assert removed == expired_before
    assert await scalar(conn, "SELECT count(*) FROM idempotency_key WHERE expires_at <= statement_timestamp()") == 0
    assert await scalar(conn, "SELECT count(*) FROM idempotency_key") == live_before
    keys = await conn.execute(
        "SELECT key FROM idempotency_key WHERE principal = %s ORDER BY key", (f"operator:{operator['id']}",)
    )
    assert [row[0] for row in await keys.fetchall()] == ["gc-live"]
    assert await idempotency.delete_expired(conn) == 0


# IDEM-9 ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "code"),
    [
        ("", "INVALID_PARAMETER"),
        ("k" * 256, "IDEMPOTENCY_KEY_TOO_LONG"),
        ("k" * 1000, "IDEMPOTENCY_KEY_TOO_LONG"),
        ("clé-ключ".encode(), "INVALID_PARAMETER"),
        (b"tab\there", "INVALID_PARAMETER"),
    ],
    ids=["empty", "256-chars", "1000-chars", "non-ascii", "control-char"],
)
async def test_malformed_keys_are_refused_before_anything_runs(client, conn, operator, key, code):
    response = await client.post("/api/v1/operator/agents", json=AGENT_BODY, headers=keyed(operator["api_key"], key))

    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert error_code(response) == code
    assert "Idempotency-Key" in response.json()["error"]["message"]
    assert response.json()["error"]["suggestion"]
    assert await agents_of(conn, operator["id"]) == 0
    assert await records_of(conn, f"operator:{operator['id']}") == 0


async def test_a_255_character_key_is_accepted(client, conn, operator):
    key = "k" * 254 + "Z"
    headers = keyed(operator["api_key"], key)
    first = await client.post("/api/v1/operator/agents", json=AGENT_BODY, headers=headers)
    second = await client.post("/api/v1/operator/agents", json=AGENT_BODY, headers=headers)

    assert first.status_code == 201, first.text
    assert second.headers[REPLAYED] == "true" and second.content == first.content
    assert await agents_of(conn, operator["id"]) == 1


# Business errors are stored, validation failures are not ---------------------------------------------------------


async def test_a_business_error_is_stored_and_replayed(client, conn, admin_key, operator):
    path = f"/api/v1/admin/operators/{operator['id']}/credits"
    debit = {"amount": -1_000_000, "reason": "too much"}
    headers = keyed(admin_key, "idem-business-error")
    transfers = await transfers_of(conn, operator["id"])

    first = await client.post(path, json=debit, headers=headers)
    assert first.status_code == 422, first.text
    assert error_code(first) == "INSUFFICIENT_CREDITS"
    assert REPLAYED not in first.headers
    assert await scalar(conn, "SELECT count(*) FROM idempotency_key WHERE key = %s", "idem-business-error") == 1

    # Even once the debit could succeed, the key answers with its first outcome and moves nothing.
    grant = await client.post(path, json={"amount": 2_000_000, "reason": "top up"}, headers=bearer(admin_key))
    assert grant.status_code == 201
    second = await client.post(path, json=debit, headers=headers)

    assert second.status_code == 422 and second.headers[REPLAYED] == "true"
    assert second.content == first.content
    assert await transfers_of(conn, operator["id"]) == transfers + 1  # only the grant
    assert await balance_of(conn, operator["id"]) == 500 + 2_000_000


@pytest.mark.parametrize(
    "invalid",
    [{"amount": "ten", "reason": "x"}, {"amount": 10}, {"amount": 10, "reason": "x", "admin": True}],
    ids=["wrong-type", "missing-field", "unknown-field"],
)
async def test_a_schema_validation_failure_is_not_stored(client, conn, admin_key, operator, invalid):
    path = f"/api/v1/admin/operators/{operator['id']}/credits"
    headers = keyed(admin_key, "idem-validation")
    records = await scalar(conn, "SELECT count(*) FROM idempotency_key")

    rejected = await client.post(path, json=invalid, headers=headers)
    assert rejected.status_code == 422
    assert error_code(rejected) == "VALIDATION_ERROR"
    assert await scalar(conn, "SELECT count(*) FROM idempotency_key") == records

    accepted = await client.post(path, json={"amount": 10, "reason": "valid"}, headers=headers)
    assert accepted.status_code == 201, accepted.text
    assert REPLAYED not in accepted.headers
    assert accepted.json()["data"]["amount"] == 10
    assert await balance_of(conn, operator["id"]) == 510


async def test_a_zero_amount_refused_by_the_handler_is_not_stored(client, conn, admin_key, operator):
    path = f"/api/v1/admin/operators/{operator['id']}/credits"
    headers = keyed(admin_key, "idem-zero")
    rejected = await client.post(path, json={"amount": 0, "reason": "x"}, headers=headers)
    assert rejected.status_code == 422 and error_code(rejected) == "VALIDATION_ERROR"

    accepted = await client.post(path, json={"amount": 7, "reason": "x"}, headers=headers)
    assert accepted.status_code == 201 and REPLAYED not in accepted.headers


async def test_an_auth_failure_is_not_stored(client, conn, operator):
    bad = {"Authorization": "Bearer " + "x" * 20, "Idempotency-Key": "idem-auth"}
    assert (await client.post("/api/v1/operator/agents", json=AGENT_BODY, headers=bad)).status_code == 401
    created = await client.post(
        "/api/v1/operator/agents", json=AGENT_BODY, headers=keyed(operator["api_key"], "idem-auth")
    )
    assert created.status_code == 201 and REPLAYED not in created.headers


# Methods ---------------------------------------------------------------------------------------------------------


async def test_get_ignores_the_key(client: AsyncTestClient, conn, operator, agent):
    records = await scalar(conn, "SELECT count(*) FROM idempotency_key")
    for key in ("get-key", "k" * 300, ""):
        headers = keyed(operator["api_key"], key)
        first = await client.get("/api/v1/operator/agents", headers=headers)
        second = await client.get("/api/v1/operator/agents", headers=headers)
        assert first.status_code == second.status_code == 200, first.text
        assert REPLAYED not in first.headers and REPLAYED not in second.headers
        assert first.json()["meta"]["request_id"] != second.json()["meta"]["request_id"]
    me = await client.get("/api/v1/agents/me", headers=keyed(agent["api_key"], "get-key"))
    assert me.status_code == 200 and REPLAYED not in me.headers
    assert await scalar(conn, "SELECT count(*) FROM idempotency_key") == records


async def test_patch_honours_the_key(client, conn, agent):
    headers = keyed(agent["api_key"], "idem-patch")
    first = await client.patch("/api/v1/agents/me", json={"description": "first"}, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["data"]["description"] == "first" and REPLAYED not in first.headers

    # Someone changes the profile without a key; a retry of the keyed PATCH must not run again.
    later = await client.patch("/api/v1/agents/me", json={"description": "later"}, headers=bearer(agent["api_key"]))
    assert later.status_code == 200
    retry = await client.patch("/api/v1/agents/me", json={"description": "first"}, headers=headers)

    assert retry.status_code == 200 and retry.headers[REPLAYED] == "true"
    assert retry.content == first.content
    assert await scalar(conn, "SELECT description FROM agent WHERE id = %s", agent["id"]) == "later"

    mismatch = await client.patch("/api/v1/agents/me", json={"description": "other"}, headers=headers)
    assert mismatch.status_code == 422 and error_code(mismatch) == "IDEMPOTENCY_KEY_MISMATCH"
    assert await scalar(conn, "SELECT description FROM agent WHERE id = %s", agent["id"]) == "later"
    assert await records_of(conn, f"agent:{agent['id']}") == 1
