"""The authentication matrix: three key kinds, their endpoint families, agent statuses and the rate limit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from litestar.testing import AsyncTestClient

from app.main import create_app
from app.repo.connections import SharedConnectionSource
from domain.keys import hash_key
from tests.conftest import TEST_SETTINGS, bearer

ME = {
    "agent": "/api/v1/agents/me",
    "operator": "/api/v1/operator/me",
    "admin": "/api/v1/admin/accounts",
}
PREFIX = {"agent": "th_agent_", "operator": "th_op_", "admin": "th_admin_"}
KINDS = list(ME)
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


@asynccontextmanager
async def limited_client(conn, per_minute: int) -> AsyncIterator[AsyncTestClient]:
    """A second app on the test's connection whose rate limit is `per_minute`."""
    app = create_app(
        TEST_SETTINGS.with_overrides(rate_limit_per_minute=per_minute), source=SharedConnectionSource(conn)
    )
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


@pytest.fixture
def keys(agent, operator, admin_key) -> dict[str, str]:
    return {"agent": agent["api_key"], "operator": operator["api_key"], "admin": admin_key}


def unauthorized(response: httpx.Response) -> dict:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["ok"] is False
    assert body["error"]["code"] == "UNAUTHORIZED"
    assert body["error"]["suggestion"]
    assert response.headers["x-request-id"] == body["meta"]["request_id"]
    return body["error"]


def forbidden(response: httpx.Response, code: str) -> dict:
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["ok"] is False
    assert body["error"]["code"] == code
    assert body["error"]["suggestion"]
    return body["error"]


def raw_error(response: httpx.Response) -> str:
    """The `error` object exactly as serialized (key order included)."""
    return json.dumps(response.json()["error"])


async def revoke_in_database(conn, key: str) -> None:
    await conn.execute("UPDATE api_key SET revoked_at = statement_timestamp() WHERE key_hash = %s", (hash_key(key),))


# Valid keys


@pytest.mark.parametrize("kind", KINDS)
async def test_a_live_key_of_the_right_kind_is_admitted(client, keys, kind):
    response = await client.get(ME[kind], headers=bearer(keys[kind]))
    assert response.status_code == 200, response.text
    assert response.json()["ok"] is True


# Missing or non-Bearer header


@pytest.mark.parametrize("kind", KINDS)
async def test_no_authorization_header_is_401(client, kind):
    error = unauthorized(await client.get(ME[kind]))
    assert error["message"] == "Missing or invalid Authorization header"
    assert PREFIX[kind] in error["suggestion"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Token {key}", "{key}", "Basic {key}"])
async def test_a_header_that_is_not_bearer_is_401(client, keys, kind, header):
    response = await client.get(ME[kind], headers={"Authorization": header.format(key=keys[kind])})
    error = unauthorized(response)
    assert error["message"] == "Missing or invalid Authorization header"


@pytest.mark.parametrize("kind", KINDS)
async def test_an_empty_bearer_token_is_401(client, kind):
    unauthorized(await client.get(ME[kind], headers={"Authorization": "Bearer  "}))


# Malformed, unknown, revoked and wrong-kind keys


def malformed_keys(kind: str) -> list[str]:
    prefix = PREFIX[kind]
    return [
        "x",
        prefix,
        prefix + "a" * 63,
        prefix + "a" * 65,
        prefix + "A" * 64,
        prefix + "g" * 64,
        prefix.upper() + "a" * 64,
        "th_other_" + "a" * 64,
    ]


@pytest.mark.parametrize("kind", KINDS)
async def test_malformed_keys_are_401_invalid_api_key(client, kind):
    for key in malformed_keys(kind):
        error = unauthorized(await client.get(ME[kind], headers=bearer(key)))
        assert error["message"] == "Invalid API key", key


@pytest.mark.parametrize("kind", KINDS)
async def test_an_unknown_well_formed_key_is_401(client, kind):
    error = unauthorized(await client.get(ME[kind], headers=bearer(PREFIX[kind] + "0" * 64)))
    assert error["message"] == "Invalid API key"


async def test_a_rotated_agent_key_is_401(client, operator, agent):
    rotated = await client.post(
        f"/api/v1/operator/agents/{agent['id']}/rotate-key", headers=bearer(operator["api_key"])
    )
    assert rotated.status_code == 200, rotated.text
    error = unauthorized(await client.get(ME["agent"], headers=bearer(agent["api_key"])))
    assert error["message"] == "Invalid API key"


@pytest.mark.parametrize("kind", ["operator", "admin"])
async def test_a_revoked_operator_or_admin_key_is_401(client, conn, keys, kind):
    await revoke_in_database(conn, keys[kind])
    error = unauthorized(await client.get(ME[kind], headers=bearer(keys[kind])))
    assert error["message"] == "Invalid API key"


@pytest.mark.parametrize(("kind", "other"), [(k, o) for k in KINDS for o in KINDS if k != o])
async def test_a_key_of_the_wrong_kind_is_401(client, keys, kind, other):
    error = unauthorized(await client.get(ME[kind], headers=bearer(keys[other])))
    assert error["message"] == "Invalid API key"


async def test_malformed_unknown_revoked_and_wrong_kind_agent_keys_give_identical_errors(client, operator, agent):
    old_key = agent["api_key"]
    rotated = await client.post(
        f"/api/v1/operator/agents/{agent['id']}/rotate-key", headers=bearer(operator["api_key"])
    )
    assert rotated.status_code == 200
    responses = [
        await client.get(ME["agent"], headers=bearer("th_agent_nothex")),
        await client.get(ME["agent"], headers=bearer("th_agent_" + "0" * 64)),
        await client.get(ME["agent"], headers=bearer(old_key)),
        await client.get(ME["agent"], headers=bearer(operator["api_key"])),
    ]
    for response in responses:
        unauthorized(response)
    assert len({raw_error(r) for r in responses}) == 1
    assert len({r.headers["content-length"] for r in responses}) == 1


@pytest.mark.parametrize("kind", ["operator", "admin"])
async def test_malformed_unknown_revoked_and_wrong_kind_keys_give_identical_errors(client, conn, keys, kind):
    other = "agent"
    live = keys[kind]
    await revoke_in_database(conn, live)
    responses = [
        await client.get(ME[kind], headers=bearer(PREFIX[kind] + "zz")),
        await client.get(ME[kind], headers=bearer(PREFIX[kind] + "0" * 64)),
        await client.get(ME[kind], headers=bearer(live)),
        await client.get(ME[kind], headers=bearer(keys[other])),
    ]
    for response in responses:
        unauthorized(response)
    assert len({raw_error(r) for r in responses}) == 1


async def test_a_rotated_key_is_replaced_by_a_working_one(client, operator, agent):
    rotated = await client.post(
        f"/api/v1/operator/agents/{agent['id']}/rotate-key", headers=bearer(operator["api_key"])
    )
    new_key = rotated.json()["data"]["api_key"]
    response = await client.get(ME["agent"], headers=bearer(new_key))
    assert response.status_code == 200
    assert response.json()["data"]["id"] == agent["id"]


# Agent statuses


async def pause(client, operator, agent) -> httpx.Response:
    return await client.post(f"/api/v1/operator/agents/{agent['id']}/pause", headers=bearer(operator["api_key"]))


async def test_a_paused_agent_is_403_forbidden(client, operator, agent):
    assert (await pause(client, operator, agent)).status_code == 200
    error = forbidden(await client.get(ME["agent"], headers=bearer(agent["api_key"])), "FORBIDDEN")
    assert error["message"] == "Agent is paused"


async def test_a_paused_agent_is_refused_on_every_agent_endpoint(client, operator, agent):
    await pause(client, operator, agent)
    headers = bearer(agent["api_key"])
    forbidden(await client.get("/api/v1/agents/me/credits", headers=headers), "FORBIDDEN")
    forbidden(await client.get(f"/api/v1/agents/{agent['id']}", headers=headers), "FORBIDDEN")
    forbidden(await client.patch("/api/v1/agents/me", json={"description": "new"}, headers=headers), "FORBIDDEN")


async def test_resuming_a_paused_agent_restores_access(client, operator, agent):
    await pause(client, operator, agent)
    resumed = await client.post(f"/api/v1/operator/agents/{agent['id']}/resume", headers=bearer(operator["api_key"]))
    assert resumed.status_code == 200
    response = await client.get(ME["agent"], headers=bearer(agent["api_key"]))
    assert response.status_code == 200
    assert response.json()["data"]["status"] == "active"


async def test_a_suspended_agent_is_403_forbidden(client, admin_key, agent):
    suspended = await client.post(f"/api/v1/admin/agents/{agent['id']}/suspend", headers=bearer(admin_key))
    assert suspended.status_code == 200, suspended.text
    error = forbidden(await client.get(ME["agent"], headers=bearer(agent["api_key"])), "FORBIDDEN")
    assert error["message"] == "Agent is suspended"


async def test_reactivating_a_suspended_agent_restores_access(client, admin_key, agent):
    await client.post(f"/api/v1/admin/agents/{agent['id']}/suspend", headers=bearer(admin_key))
    reactivated = await client.post(f"/api/v1/admin/agents/{agent['id']}/reactivate", headers=bearer(admin_key))
    assert reactivated.status_code == 200, reactivated.text
    response = await client.get(ME["agent"], headers=bearer(agent["api_key"]))
    assert response.status_code == 200
    assert response.json()["data"]["status"] == "active"


async def register(client, name: str = "selfmade") -> dict:
    response = await client.post("/api/v1/agents/register", json={"name": name, "description": "Signs itself up"})
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def test_a_self_registered_agent_is_403_pending_claim(client):
    registered = await register(client)
    error = forbidden(await client.get(ME["agent"], headers=bearer(registered["api_key"])), "PENDING_CLAIM")
    assert "claim" in error["suggestion"].lower()


async def test_claiming_makes_the_agent_active(client, operator):
    registered = await register(client)
    claimed = await client.post(
        "/api/v1/operator/agents/claim",
        json={"verification_code": registered["verification_code"]},
        headers=bearer(operator["api_key"]),
    )
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["data"]["status"] == "active"
    me = await client.get(ME["agent"], headers=bearer(registered["api_key"]))
    assert me.status_code == 200
    assert me.json()["data"]["operator"] == {"id": operator["id"], "name": operator["name"]}


async def test_claiming_gives_the_operator_100_credits(client, operator):
    before = (await client.get(ME["operator"], headers=bearer(operator["api_key"]))).json()["data"]
    registered = await register(client)
    await client.post(
        "/api/v1/operator/agents/claim",
        json={"verification_code": registered["verification_code"]},
        headers=bearer(operator["api_key"]),
    )
    after = (await client.get(ME["operator"], headers=bearer(operator["api_key"]))).json()["data"]
    assert after["credit_balance"] == before["credit_balance"] + 100
    assert after["agents_count"] == before["agents_count"] + 1


async def test_registration_is_public_and_ignores_any_key(client, agent):
    response = await client.post(
        "/api/v1/agents/register",
        json={"name": "with-header", "description": "Sends a key anyway"},
        headers=bearer("garbage"),
    )
    assert response.status_code == 201


# Rate-limit headers


def rate_headers(response: httpx.Response) -> tuple[int, int, int]:
    limit, remaining, reset = (int(response.headers[h]) for h in RATE_HEADERS)
    return limit, remaining, reset


@pytest.mark.parametrize("kind", KINDS)
async def test_authenticated_success_has_rate_headers(client, keys, kind):
    response = await client.get(ME[kind], headers=bearer(keys[kind]))
    limit, remaining, reset = rate_headers(response)
    assert limit == TEST_SETTINGS.rate_limit_per_minute
    assert 0 <= remaining < limit
    assert reset > 0


async def test_a_404_of_an_authenticated_caller_has_rate_headers(client, agent):
    response = await client.get("/api/v1/agents/999999999", headers=bearer(agent["api_key"]))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "AGENT_NOT_FOUND"
    rate_headers(response)


async def test_a_422_of_an_authenticated_caller_has_rate_headers(client, agent):
    response = await client.patch("/api/v1/agents/me", json={}, headers=bearer(agent["api_key"]))
    assert response.status_code == 422
    rate_headers(response)


async def test_a_schema_422_of_an_authenticated_caller_has_rate_headers(client, agent):
    response = await client.patch("/api/v1/agents/me", json={"name": 1}, headers=bearer(agent["api_key"]))
    assert response.status_code == 422
    rate_headers(response)


async def test_a_400_of_an_authenticated_caller_has_rate_headers(client, operator):
    response = await client.get("/api/v1/operator/agents?limit=0", headers=bearer(operator["api_key"]))
    assert response.status_code == 400
    rate_headers(response)


async def test_a_409_of_an_authenticated_caller_has_rate_headers(client, admin_key, agent):
    response = await client.post(f"/api/v1/admin/agents/{agent['id']}/reactivate", headers=bearer(admin_key))
    assert response.status_code == 409
    rate_headers(response)


@pytest.mark.parametrize("kind", KINDS)
async def test_unauthenticated_401s_have_no_rate_headers(client, kind):
    for headers in ({}, {"Authorization": "Basic x"}, bearer(PREFIX[kind] + "0" * 64)):
        response = await client.get(ME[kind], headers=headers)
        assert response.status_code == 401
        for header in RATE_HEADERS:
            assert header not in response.headers


async def test_a_public_route_carries_the_address_budget(client, settings):
    # Issue 11: a public route is limited per client address (it was unlimited, so it carried no headers).
    response = await client.post("/api/v1/agents/register", json={"name": "public-one", "description": "no key"})
    assert response.status_code == 201
    assert response.headers["x-ratelimit-limit"] == str(settings.anonymous_rate_limit_per_minute)


async def test_an_inactive_agent_is_not_counted(client, operator, agent):
    await pause(client, operator, agent)
    response = await client.get(ME["agent"], headers=bearer(agent["api_key"]))
    assert response.status_code == 403
    for header in RATE_HEADERS:
        assert header not in response.headers


async def test_remaining_decreases_with_each_call_including_errors(conn, agent):
    async with limited_client(conn, per_minute=10) as limited:
        headers = bearer(agent["api_key"])
        responses = [
            await limited.get(ME["agent"], headers=headers),
            await limited.get("/api/v1/agents/999999999", headers=headers),
            await limited.patch("/api/v1/agents/me", json={}, headers=headers),
            await limited.get(ME["agent"], headers=headers),
        ]
    assert [r.status_code for r in responses] == [200, 404, 422, 200]
    limits = [rate_headers(r)[0] for r in responses]
    remaining = [rate_headers(r)[1] for r in responses]
    resets = [rate_headers(r)[2] for r in responses]
    assert limits == [10] * 4
    assert remaining == [9, 8, 7, 6]
    assert resets == sorted(resets)


async def test_the_call_over_the_limit_is_429_rate_limited(conn, agent):
    async with limited_client(conn, per_minute=3) as limited:
        headers = bearer(agent["api_key"])
        admitted = [await limited.get(ME["agent"], headers=headers) for _ in range(3)]
        refused = await limited.get(ME["agent"], headers=headers)
    assert [r.status_code for r in admitted] == [200, 200, 200]
    assert refused.status_code == 429, refused.text
    body = refused.json()
    assert body["ok"] is False
    assert body["error"]["code"] == "RATE_LIMITED"
    assert refused.headers["x-request-id"] == body["meta"]["request_id"]
    retry_after = int(refused.headers["retry-after"])
    assert retry_after >= 1
    assert f"Wait {retry_after} seconds" in body["error"]["suggestion"]
    limit, remaining, _ = rate_headers(refused)
    assert (limit, remaining) == (3, 0)


async def test_the_rate_limit_is_per_caller(conn, operator, agent, client):
    second = await client.post(
        "/api/v1/operator/agents",
        json={"name": "Second", "description": "Another one"},
        headers=bearer(operator["api_key"]),
    )
    second_key = second.json()["data"]["api_key"]
    async with limited_client(conn, per_minute=3) as limited:
        for _ in range(4):
            last = await limited.get(ME["agent"], headers=bearer(agent["api_key"]))
        other = await limited.get(ME["agent"], headers=bearer(second_key))
    assert last.status_code == 429
    assert other.status_code == 200


async def test_refused_calls_do_not_push_the_limit_further(conn, agent):
    async with limited_client(conn, per_minute=3) as limited:
        headers = bearer(agent["api_key"])
        for _ in range(3):
            await limited.get(ME["agent"], headers=headers)
        refusals = [await limited.get(ME["agent"], headers=headers) for _ in range(3)]
    assert {r.status_code for r in refusals} == {429}
    waits = [int(r.headers["retry-after"]) for r in refusals]
    assert waits == sorted(waits, reverse=True)


async def test_a_429_is_checked_after_authentication(conn, agent):
    async with limited_client(conn, per_minute=3) as limited:
        for _ in range(4):
            await limited.get(ME["agent"], headers=bearer(agent["api_key"]))
        response = await limited.get(ME["agent"], headers=bearer("th_agent_" + "0" * 64))
    assert response.status_code == 401
