"""The envelope on every response: `{ok, data, meta}` or `{ok: false, error, meta}`, and X-Request-Id."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import httpx
import pytest
from litestar import get
from litestar.testing import AsyncTestClient

from app.config import Settings
from app.main import create_app
from app.repo.connections import SharedConnectionSource
from tests.conftest import TEST_SETTINGS, bearer
from tests.support import asgi_post

REQUEST_ID = re.compile(r"^req_[0-9a-f]+$")


@asynccontextmanager
async def app_client(conn, settings: Settings = TEST_SETTINGS, *routes) -> AsyncIterator[AsyncTestClient]:
    app = create_app(settings, source=SharedConnectionSource(conn))
    for route in routes:
        app.register(route)
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


def assert_meta(response: httpx.Response) -> dict:
    body = response.json()
    meta = body["meta"]
    assert REQUEST_ID.match(meta["request_id"]), meta
    assert response.headers["x-request-id"] == meta["request_id"]
    assert datetime.fromisoformat(meta["timestamp"].replace("Z", "+00:00")).tzinfo is not None
    return body


def assert_success(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    body = assert_meta(response)
    assert body["ok"] is True
    assert set(body) == {"ok", "data", "meta"}
    return body["data"]


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = assert_meta(response)
    assert body["ok"] is False
    assert set(body) == {"ok", "error", "meta"}
    assert set(body["meta"]) == {"timestamp", "request_id"}
    error = body["error"]
    assert set(error) == {"code", "message", "suggestion"}
    assert error["code"] == code, error
    assert error["message"].strip()
    assert error["suggestion"].strip()
    return error


# Success


async def test_success_has_ok_data_and_meta_with_request_id(client, agent):
    response = await client.get("/api/v1/agents/me", headers=bearer(agent["api_key"]))
    data = assert_success(response)
    assert data["id"] == agent["id"]
    assert set(response.json()["meta"]) == {"timestamp", "request_id"}


async def test_healthz_is_enveloped(client):
    data = assert_success(await client.get("/healthz"))
    assert data == {"status": "ok"}


async def test_list_meta_carries_cursor_has_more_and_count(client, operator, agent):
    response = await client.get("/api/v1/operator/agents", headers=bearer(operator["api_key"]))
    assert_success(response)
    meta = response.json()["meta"]
    assert set(meta) == {"timestamp", "request_id", "cursor", "has_more", "count"}
    assert meta["cursor"] is None
    assert meta["has_more"] is False
    assert meta["count"] == 1


async def test_every_response_gets_its_own_request_id(client):
    first = await client.get("/healthz")
    second = await client.get("/healthz")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_error_request_id_matches_header(client):
    response = await client.get("/api/v1/agents/me")
    assert_error(response, 401, "UNAUTHORIZED")


# Routing errors


async def test_unknown_route_is_404_not_found(client):
    error = assert_error(await client.get("/api/v1/nope"), 404, "NOT_FOUND")
    assert "/api/v1/nope" in error["message"]


async def test_unknown_route_outside_the_api_is_enveloped(client):
    assert_error(await client.post("/does/not/exist", json={}), 404, "NOT_FOUND")


async def test_wrong_method_is_405_with_allow_header(client, agent):
    response = await client.delete("/api/v1/agents/me", headers=bearer(agent["api_key"]))
    error = assert_error(response, 405, "METHOD_NOT_ALLOWED")
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"GET", "PATCH"} <= allowed
    assert "DELETE" not in allowed
    assert "DELETE" in error["message"]


async def test_wrong_method_on_a_post_only_route_lists_post(client):
    response = await client.get("/api/v1/agents/register")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in response.headers["allow"]


# Body errors


@pytest.mark.parametrize(
    "body",
    [
        b"{nope",
        b"not json",
        b'{"name": "x"} trailing',
        pytest.param(b'{"name": "x",', id="truncated-object"),
        pytest.param(b'{"name": "x"', id="unclosed-object"),
    ],
)
async def test_malformed_json_is_422_validation_error(client, agent, body):
    response = await client.patch(
        "/api/v1/agents/me",
        content=body,
        headers={**bearer(agent["api_key"]), "Content-Type": "application/json"},
    )
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert "JSON" in error["message"]


async def test_malformed_json_on_a_public_route_is_422(client):
    response = await client.post(
        "/api/v1/agents/register", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 422, "VALIDATION_ERROR")


async def test_wrong_type_names_the_field(client, agent):
    response = await client.patch("/api/v1/agents/me", json={"name": 42}, headers=bearer(agent["api_key"]))
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert "name" in error["message"]


async def test_wrong_type_in_a_nested_list_names_the_field(client, agent):
    response = await client.patch(
        "/api/v1/agents/me", json={"capabilities": "python"}, headers=bearer(agent["api_key"])
    )
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert "capabilities" in error["message"]


async def test_unknown_field_names_the_field(client, agent):
    response = await client.patch("/api/v1/agents/me", json={"nickname": "bob"}, headers=bearer(agent["api_key"]))
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert "nickname" in error["message"]


async def test_too_short_names_the_field(client):
    response = await client.post("/api/v1/agents/register", json={"name": "bot-one", "description": "hey"})
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert "description" in error["message"]


async def test_missing_required_field_names_the_field(client):
    response = await client.post("/api/v1/agents/register", json={"name": "bot-one"})
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert "description" in error["message"]


async def test_body_that_is_not_an_object_is_422(client):
    response = await client.post("/api/v1/agents/register", json=["bot-one", "a description"])
    assert_error(response, 422, "VALIDATION_ERROR")


async def test_empty_body_is_422(client):
    response = await client.post("/api/v1/agents/register", content=b"", headers={"Content-Type": "application/json"})
    assert_error(response, 422, "VALIDATION_ERROR")


async def test_empty_body_on_an_authenticated_route_is_422(client, operator):
    response = await client.post(
        "/api/v1/operator/agents",
        content=b"",
        headers={**bearer(operator["api_key"]), "Content-Type": "application/json"},
    )
    assert_error(response, 422, "VALIDATION_ERROR")


async def test_body_over_the_limit_is_413(conn):
    async with app_client(conn, TEST_SETTINGS.with_overrides(max_body_bytes=2048)) as small:
        body = {"name": "big-bot", "description": "x" * 4000}
        response = await small.post("/api/v1/agents/register", json=body)
    error = assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert "too large" in error["message"].lower()


async def test_body_under_the_limit_is_accepted(conn):
    async with app_client(conn, TEST_SETTINGS.with_overrides(max_body_bytes=2048)) as small:
        response = await small.post("/api/v1/agents/register", json={"name": "small-bot", "description": "x" * 400})
    assert_success(response, 201)


async def test_body_over_the_limit_on_an_authenticated_route_is_413(conn, admin_key):
    async with app_client(conn, TEST_SETTINGS.with_overrides(max_body_bytes=2048)) as small:
        response = await small.post("/api/v1/admin/operators", json={"name": "n" * 3000}, headers=bearer(admin_key))
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


async def test_a_chunked_body_over_the_limit_is_413(conn):
    app = create_app(TEST_SETTINGS.with_overrides(max_body_bytes=2048), source=SharedConnectionSource(conn))
    chunks = [b'{"name": "chunky", "description": "', *([b"x" * 400] * 10), b'"}']
    headers = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
    status, body = await asgi_post(app, "/api/v1/agents/register", chunks, headers)
    assert status == 413
    assert body["ok"] is False
    assert body["error"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_a_body_longer_than_its_content_length_claims_is_413(conn):
    app = create_app(TEST_SETTINGS.with_overrides(max_body_bytes=2048), source=SharedConnectionSource(conn))
    chunks = [b'{"name": "liar", "description": "' + b"x" * 3000 + b'"}']
    headers = [(b"content-type", b"application/json"), (b"content-length", b"40")]
    status, body = await asgi_post(app, "/api/v1/agents/register", chunks, headers)
    assert status == 413
    assert body["error"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_a_chunked_body_under_the_limit_is_accepted(conn):
    app = create_app(TEST_SETTINGS.with_overrides(max_body_bytes=2048), source=SharedConnectionSource(conn))
    chunks = [b'{"name": "chunk-ok",', b' "description": "in two parts"}']
    headers = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
    status, body = await asgi_post(app, "/api/v1/agents/register", chunks, headers)
    assert status == 201
    assert body["data"]["name"] == "chunk-ok"


# Unhandled exceptions

SECRET = "kaboom-do-not-leak-1234"


@get("/test/explode", sync_to_thread=False)
def explode() -> None:
    raise RuntimeError(SECRET)


async def test_unhandled_exception_is_500_internal_error_without_traceback(conn):
    async with app_client(conn, TEST_SETTINGS, explode) as test_client:
        response = await test_client.get("/test/explode")
    assert_error(response, 500, "INTERNAL_ERROR")
    text = response.text
    assert SECRET not in text
    assert "Traceback" not in text
    assert "RuntimeError" not in text
    assert ".py" not in text


async def test_app_keeps_serving_after_an_unhandled_exception(conn):
    async with app_client(conn, TEST_SETTINGS, explode) as test_client:
        await test_client.get("/test/explode")
        response = await test_client.get("/healthz")
    assert_success(response)


# Path and query parameters


@pytest.mark.parametrize("agent_id", ["abc", "0", "-1", "1.5", "99999999999999999999"])
async def test_invalid_path_id_is_400_invalid_parameter(client, agent, agent_id):
    response = await client.get(f"/api/v1/agents/{agent_id}", headers=bearer(agent["api_key"]))
    error = assert_error(response, 400, "INVALID_PARAMETER")
    assert "positive integer" in error["message"]


@pytest.mark.parametrize("path", ["pause", "resume", "rotate-key"])
async def test_invalid_path_id_on_operator_actions_is_400(client, operator, path):
    response = await client.post(f"/api/v1/operator/agents/abc/{path}", headers=bearer(operator["api_key"]))
    assert_error(response, 400, "INVALID_PARAMETER")


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc", "limit=-5", "cursor=garbage", "cursor=e30"])
async def test_bad_list_query_is_400_invalid_parameter(client, operator, query):
    response = await client.get(f"/api/v1/operator/agents?{query}", headers=bearer(operator["api_key"]))
    assert_error(response, 400, "INVALID_PARAMETER")


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc", "cursor=garbage"])
async def test_bad_credits_query_is_400_invalid_parameter(client, agent, query):
    response = await client.get(f"/api/v1/agents/me/credits?{query}", headers=bearer(agent["api_key"]))
    assert_error(response, 400, "INVALID_PARAMETER")


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc", "cursor=garbage", "kind=nonsense"])
async def test_bad_accounts_query_is_400_invalid_parameter(client, admin_key, query):
    response = await client.get(f"/api/v1/admin/accounts?{query}", headers=bearer(admin_key))
    assert_error(response, 400, "INVALID_PARAMETER")


# A cursor whose id is a JSON boolean: bool is an int in Python, so decode_cursor lets it through.
BOOLEAN_CURSOR = base64.urlsafe_b64encode(b'{"id":true}').decode().rstrip("=")


@pytest.mark.parametrize(
    ("path", "who"),
    [
        ("/api/v1/agents/me/credits", "agent"),
        ("/api/v1/operator/agents", "operator"),
        ("/api/v1/operator/credits", "operator"),
    ],
)
async def test_a_forged_boolean_cursor_is_400(client, agent, operator, path, who):
    key = agent["api_key"] if who == "agent" else operator["api_key"]
    response = await client.get(f"{path}?cursor={BOOLEAN_CURSOR}", headers=bearer(key))
    assert_error(response, 400, "INVALID_PARAMETER")


async def test_limit_message_names_the_range(client, operator):
    response = await client.get("/api/v1/operator/agents?limit=101", headers=bearer(operator["api_key"]))
    error = assert_error(response, 400, "INVALID_PARAMETER")
    assert "1" in error["message"]
    assert "100" in error["message"]


async def test_limit_type_error_names_the_parameter(client, operator):
    response = await client.get("/api/v1/operator/agents?limit=abc", headers=bearer(operator["api_key"]))
    error = assert_error(response, 400, "INVALID_PARAMETER")
    assert "limit" in error["message"]


async def test_limit_type_error_says_query_parameter(client, operator):
    response = await client.get("/api/v1/operator/agents?limit=abc", headers=bearer(operator["api_key"]))
    error = assert_error(response, 400, "INVALID_PARAMETER")
    assert error["message"].startswith("Invalid query parameter 'limit'"), error["message"]


async def test_limit_bounds_are_inclusive(client, operator):
    for limit in (1, 100):
        response = await client.get(f"/api/v1/operator/agents?limit={limit}", headers=bearer(operator["api_key"]))
        assert_success(response)


@pytest.mark.parametrize("path", ["/schema/nothing", "/schema/openapi.yaml", "/schema/rapidoc"])
async def test_an_unknown_page_under_schema_is_the_404_envelope(client, path):
    # Litestar's /schema/{path} route answered these with an HTML page.
    response = await client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == "NOT_FOUND"
    assert response.headers["x-request-id"] == response.json()["meta"]["request_id"]


def test_a_database_lost_during_the_idempotent_commit_is_a_503_to_retry_not_a_500():
    # The chaos soak saw 500 INTERNAL_ERROR when PostgreSQL died during an idempotent request's COMMIT; the
    # outcome is unknown there, and a retry with the same key is exactly what the client should do.
    import psycopg

    from app.http.errors import EXCEPTION_HANDLERS

    # The unit of work's commit raises inside the route, so the route's exception handler answers it.
    handler = EXCEPTION_HANDLERS[psycopg.Error]
    response = handler(None, psycopg.OperationalError("server closed the connection unexpectedly"))
    assert response.status_code == 503 and response.headers["Retry-After"] == "2"
    error = response.content.error
    assert error.code == "SERVICE_UNAVAILABLE" and "same Idempotency-Key" in error.suggestion
