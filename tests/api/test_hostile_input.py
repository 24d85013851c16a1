"""Issue 11: hostile bodies, methods and schemes get a clean envelope answer and change nothing."""

from __future__ import annotations

import re

import pytest

from tests.conftest import bearer
from tests.support import asgi_post

TASK = {"title": "Parse a PDF", "description": "Extract every table of the attached report", "budget_credits": 50}
DEEP = b"[" * 100_000 + b"]" * 100_000
REGISTER = {"name": "hostile-one", "description": "An agent that registers itself"}


def validation_error(response) -> str:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["ok"] is False and body["error"]["code"] == "VALIDATION_ERROR"
    return body["error"]["message"]


@pytest.mark.parametrize("key", [None, "deep-1"])
async def test_deeply_nested_json_is_a_422_with_or_without_an_idempotency_key(client, agent, key):
    extra = {"Idempotency-Key": key} if key else {}
    for path, auth in (("/api/v1/agents/register", {}), ("/api/v1/tasks", bearer(agent["api_key"]))):
        response = await client.post(path, content=DEEP, headers={**auth, **extra, "Content-Type": "application/json"})
        assert "nested deeper than 32 levels" in validation_error(response)


async def test_nesting_up_to_the_limit_is_parsed_and_beyond_it_refused(client, agent):
    def nested(depth: int) -> bytes:
        return b'{"title": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"

    headers = {**bearer(agent["api_key"]), "Content-Type": "application/json"}
    at_limit = await client.post("/api/v1/tasks", content=nested(32), headers=headers)
    assert "nested deeper" not in validation_error(at_limit)  # parsed; refused by the schema instead
    beyond = await client.post("/api/v1/tasks", content=nested(33), headers=headers)
    assert "nested deeper than 32 levels" in validation_error(beyond)


async def test_a_repeated_key_is_refused_and_nothing_is_posted(client, agent):
    body = b'{"title": "Parse a PDF", "description": "Extract every table of the attached report",'
    body += b' "budget_credits": 10, "budget_credits": 900}'
    headers = {**bearer(agent["api_key"]), "Content-Type": "application/json"}
    response = await client.post("/api/v1/tasks", content=body, headers=headers)
    assert "repeats the key 'budget_credits'" in validation_error(response)
    mine = await client.get("/api/v1/tasks", headers=bearer(agent["api_key"]))
    assert mine.json()["data"] == []


async def test_a_repeated_key_in_a_nested_object_is_refused(client, agent):
    body = b'{"claims": [{"task_id": 1, "proposed_credits": 5, "task_id": 2}]}'
    response = await client.post(
        "/api/v1/tasks/bulk/claims", content=body, headers={**bearer(agent["api_key"]), "Content-Type": "x"}
    )
    assert "repeats the key 'task_id'" in validation_error(response)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"budget_credits": NaN}', "NaN is not a JSON number"),
        (b'{"budget_credits": Infinity}', "Infinity is not a JSON number"),
        (b'{"title": "\xff\xfe"}', "not UTF-8"),
        (b'{"title": "Parse a', "not valid JSON"),
    ],
)
async def test_bodies_that_are_not_standard_json_are_refused(client, agent, body, why):
    response = await client.post("/api/v1/tasks", content=body, headers=bearer(agent["api_key"]))
    assert why in validation_error(response)


async def _open_task(client, agent) -> int:
    response = await client.post("/api/v1/tasks", json=TASK, headers=bearer(agent["api_key"]))
    assert response.status_code == 201, response.text
    return response.json()["data"]["id"]


async def test_a_route_without_a_body_refuses_one_that_is_not_json(client, agent):
    task_id = await _open_task(client, agent)
    response = await client.post(
        f"/api/v1/tasks/{task_id}/cancel", content=b"this is not json", headers=bearer(agent["api_key"])
    )
    assert "not valid JSON" in validation_error(response)
    task = await client.get(f"/api/v1/tasks/{task_id}", headers=bearer(agent["api_key"]))
    assert task.json()["data"]["status"] == "open"


@pytest.mark.parametrize("body", [b"", b"  \n", b"{}", b'{"reason": "changed my mind"}'])
async def test_a_route_without_a_body_takes_an_empty_or_json_one(client, agent, body):
    task_id = await _open_task(client, agent)
    response = await client.post(f"/api/v1/tasks/{task_id}/cancel", content=body, headers=bearer(agent["api_key"]))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "cancelled"


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
async def test_the_bearer_scheme_is_case_insensitive(client, agent, scheme):
    response = await client.get("/api/v1/agents/me", headers={"Authorization": f"{scheme} {agent['api_key']}"})
    assert response.status_code == 200, response.text


async def test_several_spaces_after_the_scheme_are_allowed(client, agent):
    response = await client.get("/api/v1/agents/me", headers={"Authorization": f"Bearer   {agent['api_key']}"})
    assert response.status_code == 200, response.text


# OPTIONS and HEAD


async def test_options_names_every_method_of_the_route(client):
    response = await client.options("/api/v1/agents/me")
    assert response.status_code == 204
    assert response.headers["allow"] == "GET, HEAD, OPTIONS, PATCH"
    assert response.content == b""


async def test_options_agrees_with_the_openapi_document_for_every_path(client):
    document = (await client.get("/schema/openapi.json")).json()
    for path, operations in document["paths"].items():
        documented = {method.upper() for method in operations if method in {"get", "post", "patch", "put", "delete"}}
        if "GET" in documented:
            documented.add("HEAD")
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        response = await client.options(concrete)
        assert response.status_code == 204, (path, concrete, response.text)
        assert set(response.headers["allow"].split(", ")) == {*documented, "OPTIONS"}, path


async def test_options_on_an_unknown_path_is_the_404_envelope(client):
    response = await client.options("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_head_answers_like_get_without_a_body(client, agent):
    get = await client.get("/api/v1/agents/me", headers=bearer(agent["api_key"]))
    head = await client.head("/api/v1/agents/me", headers=bearer(agent["api_key"]))
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == get.headers["content-length"]
    assert head.headers["x-ratelimit-limit"] == get.headers["x-ratelimit-limit"]


async def test_head_is_authenticated_like_get(client):
    response = await client.head("/api/v1/agents/me")
    assert response.status_code == 401
    assert response.content == b""


async def test_head_on_a_route_without_get_is_a_405_naming_the_methods(client):
    response = await client.head("/api/v1/agents/register")
    assert response.status_code == 405
    assert response.headers["allow"] == "OPTIONS, POST"


async def test_a_405_lists_head_beside_get(client, agent):
    response = await client.delete("/api/v1/agents/me", headers=bearer(agent["api_key"]))
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "PATCH"}


# Requests without a valid key are limited per client address


@pytest.fixture
def settings(settings):
    return settings.with_overrides(anonymous_rate_limit_per_minute=3, trusted_proxies="10.0.0.0/8")


async def test_registrations_beyond_the_address_budget_are_429(client):
    statuses = []
    for number in range(5):
        response = await client.post("/api/v1/agents/register", json={**REGISTER, "name": f"hostile-{number}"})
        statuses.append(response.status_code)
    assert statuses == [201, 201, 201, 429, 429]
    assert response.json()["error"]["code"] == "RATE_LIMITED"
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["x-ratelimit-remaining"] == "0"


async def test_wrong_keys_beyond_the_address_budget_are_429(client):
    wrong = bearer("th_agent_" + "0" * 64)
    statuses = [(await client.get("/api/v1/agents/me", headers=wrong)).status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    missing = await client.get("/api/v1/agents/me")
    assert missing.status_code == 429


async def test_a_valid_key_is_not_held_back_by_its_address_budget(client, agent):
    for _ in range(4):
        await client.get("/api/v1/agents/me", headers=bearer("th_agent_" + "0" * 64))
    response = await client.get("/api/v1/agents/me", headers=bearer(agent["api_key"]))
    assert response.status_code == 200


async def _register_via(app, peer: str, forwarded_for: str, name: str) -> int:
    body = f'{{"name": "{name}", "description": "An agent that registers itself"}}'.encode()
    headers = [(b"content-type", b"application/json"), (b"x-forwarded-for", forwarded_for.encode())]
    status, _ = await asgi_post(app, "/api/v1/agents/register", [body], headers, client=(peer, 50000))
    return status


async def test_x_forwarded_for_from_an_untrusted_peer_changes_nothing(client):
    # 127.0.0.1 is not a trusted proxy here: every request counts against it, whatever it claims to forward.
    statuses = [await _register_via(client.app, "127.0.0.1", f"203.0.113.{n}", f"spoof-{n}") for n in range(4)]
    assert statuses == [201, 201, 201, 429]


async def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(client):
    # 10.0.0.5 is a trusted proxy: each forwarded client has a budget of its own, the proxy none.
    statuses = [await _register_via(client.app, "10.0.0.5", f"203.0.113.{n}", f"proxied-{n}") for n in range(4)]
    assert statuses == [201, 201, 201, 201]
    again = [await _register_via(client.app, "10.0.0.5", "203.0.113.0", f"proxied-again-{n}") for n in range(3)]
    assert again == [201, 201, 429]


@pytest.mark.parametrize(("written", "value"), [(b"100.0", 100), (b"1e2", 100), (b"1.00E+2", 100)])
async def test_a_whole_number_written_with_a_fraction_or_exponent_is_that_integer(client, agent, written, value):
    # JSON Schema (and JavaScript, and so TaskHive's clients) count 100.0 as the integer 100.
    body = b'{"title": "Parse a PDF", "description": "Extract every table of the attached report", "budget_credits": '
    headers = {**bearer(agent["api_key"]), "Content-Type": "application/json"}
    response = await client.post("/api/v1/tasks", content=body + written + b"}", headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["data"]["budget_credits"] == value


@pytest.mark.parametrize("written", [b"100.5", b"1e999999999", b"1e-999999999", b"100.00000000000000000001"])
async def test_a_number_that_is_not_whole_is_not_an_integer(client, agent, written):
    body = b'{"title": "Parse a PDF", "description": "Extract every table of the attached report", "budget_credits": '
    headers = {**bearer(agent["api_key"]), "Content-Type": "application/json"}
    response = await client.post("/api/v1/tasks", content=body + written + b"}", headers=headers)
    assert "budget_credits" in validation_error(response)
