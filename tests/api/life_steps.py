"""Steps the task-life contract tests share (test_instant_claims.py, test_task_clock.py): posting, claiming,
delivering, and moving a task's deadlines into the past on the test's own database, where time is not waited for."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from tests.conftest import bearer

TASKS = "/api/v1/tasks"
TASK = {
    "title": "Parse invoices",
    "description": "Extract totals from a batch of PDF invoices.",
    "budget_credits": 120,
}
LATER = "2099-01-01T00:00:00Z"  # an expiry in the future, moved into the past by `passes`


async def post_task(client, agent: dict, **fields) -> dict:
    response = await client.post(TASKS, json={**TASK, **fields}, headers=bearer(agent["api_key"]))
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def claim(client, agent: dict, task_id: int, **body):
    """POST /tasks/{id}/claims with `body` as given (no proposed_credits unless named)."""
    return await client.post(f"{TASKS}/{task_id}/claims", json=body, headers=bearer(agent["api_key"]))


async def taken(client, agent: dict, task_id: int) -> dict:
    response = await claim(client, agent, task_id)
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def bid(client, agent: dict, task_id: int, credits: int = 80) -> dict:
    response = await claim(client, agent, task_id, proposed_credits=credits)
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def act(client, agent: dict, path: str, body: dict | None = None, **headers: str):
    """POST /api/v1/tasks{path} as `agent`."""
    return await client.post(f"{TASKS}{path}", json=body, headers={**bearer(agent["api_key"]), **headers})


async def get_task(client, agent: dict, task_id: int) -> dict:
    response = await client.get(f"{TASKS}/{task_id}", headers=bearer(agent["api_key"]))
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def claims_of(client, agent: dict, task_id: int) -> dict[int, str]:
    response = await client.get(f"{TASKS}/{task_id}/claims", headers=bearer(agent["api_key"]))
    assert response.status_code == 200, response.text
    return {c["id"]: c["status"] for c in response.json()["data"]}


async def deliver(client, agent: dict, task_id: int):
    return await act(client, agent, f"/{task_id}/deliverables", {"content": "the work"})


async def balance(client, agent: dict) -> int:
    response = await client.get("/api/v1/agents/me/credits", headers=bearer(agent["api_key"]))
    return response.json()["data"]["credit_balance"]


def code(response) -> str:
    return response.json()["error"]["code"]


async def passes(conn: psycopg.AsyncConnection, task_id: int, column: str) -> None:
    """Time passes the task's `expires_at` or `lease_expires_at` (a second ago, by the database's clock)."""
    assert column in ("expires_at", "lease_expires_at")
    await conn.execute(
        f"UPDATE task SET {column} = statement_timestamp() - interval '1 second' WHERE id = %s", (task_id,)
    )


async def row(conn: psycopg.AsyncConnection, sql: str, *params: Any) -> tuple:
    return await (await conn.execute(sql, params)).fetchone()


async def task_ledger(conn: psycopg.AsyncConnection, task_id: int) -> tuple[str, int, int]:
    """(status as stored, escrow balance, refund transfers) of one task."""
    return await row(
        conn,
        "SELECT t.status, e.balance, (SELECT count(*) FROM transfer x WHERE x.task_id = t.id AND x.kind = 'refund')"
        " FROM task t JOIN account e ON e.task_id = t.id WHERE t.id = %s",
        task_id,
    )


async def events_of(conn: psycopg.AsyncConnection, task_id: int, after: int = 0) -> list[tuple[str, int | None, dict]]:
    """(type, recipient, data) of the task's events after event id `after`, in order."""
    cursor = await conn.execute(
        "SELECT type, agent_id, data FROM event WHERE task_id = %s AND id > %s ORDER BY id", (task_id, after)
    )
    return [
        (kind, agent, data if isinstance(data, dict) else json.loads(data))
        for kind, agent, data in await cursor.fetchall()
    ]


async def last_event(conn: psycopg.AsyncConnection) -> int:
    (mark,) = await row(conn, "SELECT coalesce(max(id), 0) FROM event")
    return mark


async def audit(client, admin_key: str) -> dict:
    response = await client.get("/api/v1/admin/ledger/audit", headers=bearer(admin_key))
    assert response.status_code == 200, response.text
    return response.json()["data"]
