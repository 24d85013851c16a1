"""Logs: one line per request with its id and outcome, and never a key (reliability.md SEC-K3)."""

import re

from structlog.testing import capture_logs

from tests.conftest import bearer
from tests.support import asgi_post


async def test_one_request_line_with_request_id_route_and_caller(client, agent):
    with capture_logs() as logs:
        response = await client.get("/api/v1/agents/me", headers=bearer(agent["api_key"]))
    lines = [entry for entry in logs if entry["event"] == "request"]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == response.headers["x-request-id"]
    assert line["route"] == "/api/v1/agents/me"
    assert line["status"] == 200
    assert line["agent_id"] == agent["id"]
    assert line["duration_ms"] >= 0


async def test_no_log_line_contains_a_key_or_the_authorization_header(client, admin_key, operator, agent):
    with capture_logs() as logs:
        created = await client.post(
            "/api/v1/operator/agents",
            json={"name": "Logged", "description": "watch the logs"},
            headers={**bearer(operator["api_key"]), "Idempotency-Key": "log-test"},
        )
        await client.post(
            f"/api/v1/operator/agents/{created.json()['data']['id']}/rotate-key", headers=bearer(operator["api_key"])
        )
        await client.get("/api/v1/agents/me", headers=bearer(agent["api_key"]))
        await client.get("/api/v1/agents/me", headers=bearer(agent["api_key"][:-1] + "0"))
        await client.get("/api/v1/admin/accounts", headers=bearer(admin_key))
        await client.get("/api/v1/nope", headers={"Authorization": "Bearer th_agent_secret-looking-value"})
    secrets = [admin_key, operator["api_key"], agent["api_key"], created.json()["data"]["api_key"], "secret-looking"]
    text = repr(logs)
    assert len([entry for entry in logs if entry["event"] == "request"]) == 6
    for secret in secrets:
        assert secret not in text


async def test_a_client_gone_while_its_body_is_read_is_logged_as_such_and_changes_nothing(client, conn, agent):
    """A load generator stopping mid-request (or a client timing out) is not a server fault: no error with a
    traceback, no task, no idempotency claim; the request line says 499 as nginx would."""

    async def count(table: str) -> int:
        return (await (await conn.execute(f"SELECT count(*) FROM {table}")).fetchone())[0]

    tasks, claims = await count("task"), await count("idempotency_key")
    headers = {**bearer(agent["api_key"]), "Content-Type": "application/json", "Idempotency-Key": "gone-1"}
    raw_headers = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    with capture_logs() as logs:
        status, body = await asgi_post(
            client.app, "/api/v1/tasks", [b'{"title": "Half a bo'], raw_headers, complete=False
        )
    assert (status, body) == (499, None)
    events = [entry["event"] for entry in logs]
    assert "unhandled_exception" not in events, logs
    assert "client_disconnected" in events, logs
    assert [entry["status"] for entry in logs if entry["event"] == "request"] == [499]
    assert (await count("task"), await count("idempotency_key")) == (tasks, claims)


def test_a_console_traceback_shows_no_local_value(capsys):
    """Rich tracebacks print each frame's locals by default; a key in a local variable must not reach the log."""
    import structlog

    from app.logging import configure_logging

    saved = structlog.get_config()  # the logger writes to this test's captured stderr only while it runs
    configure_logging("info", "console")
    try:
        authorization = "Bearer th_agent_" + "5e4c" * 16
        raise RuntimeError(f"failed after reading a header of {len(authorization)} characters")
    except RuntimeError:
        structlog.get_logger("test").exception("unhandled_exception")
    finally:
        structlog.configure(**saved)
    written = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().err)  # colours off
    assert "failed after reading a header of 80 characters" in written  # the traceback itself is there
    assert "5e4c5e4c" not in written
