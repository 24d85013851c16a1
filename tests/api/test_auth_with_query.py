"""Reads whose authentication goes out in their query's statement (app.services.auth.DeferredAuth).

GET /tasks/{id}, browse and search authenticate and count their caller in the statement that reads, one round trip.
The answer must be the one a separate authentication gives: the same refusals with the same envelopes and headers,
no data for a refused caller (the database reads none for it), the same rate limit, and working cursors.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import pytest
from litestar.testing import AsyncTestClient
from psycopg import pq

from app.main import create_app
from app.repo.connections import SharedConnectionSource
from tests.api.test_auth import forbidden, limited_client, rate_headers, raw_error, revoke_in_database, unauthorized
from tests.conftest import TEST_SETTINGS, bearer

READS = {
    "get": "/api/v1/tasks/{task}",
    "browse": "/api/v1/tasks",
    "search": "/api/v1/tasks/search?q=parser",
}
SLOW_PATH = "/api/v1/agents/me"  # a read that authenticates on a round trip of its own, to compare with
# psycopg prepares a statement on its fifth use, in a round trip of its own (prepare_threshold): warmed up past it.
PREPARED_AFTER = 6


async def post_task(client, poster: dict, title: str = "Write a parser for logs") -> int:
    response = await client.post(
        "/api/v1/tasks",
        json={"title": title, "description": "Parse nginx access logs into JSON lines.", "budget_credits": 10},
        headers=bearer(poster["api_key"]),
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]["id"]


@pytest.fixture
async def task_id(client, poster) -> int:
    return await post_task(client, poster)


def path_of(read: str, task: int) -> str:
    return READS[read].format(task=task)


async def admitted(client, key: str, path: str) -> httpx.Response:
    response = await client.get(path, headers=bearer(key))
    assert response.status_code == 200, response.text
    return response


def has_no_data(response: httpx.Response) -> None:
    body = response.json()
    assert body["ok"] is False
    assert "data" not in body
    assert "Write a parser" not in response.text


@pytest.mark.parametrize("read", list(READS))
async def test_a_revoked_key_is_refused_as_on_the_slow_path(client, conn, worker, task_id, read):
    path = path_of(read, task_id)
    await admitted(client, worker["api_key"], path)
    await revoke_in_database(conn, worker["api_key"])
    answer = await client.get(path, headers=bearer(worker["api_key"]))
    slow = await client.get(SLOW_PATH, headers=bearer(worker["api_key"]))
    unauthorized(answer)
    unauthorized(slow)
    has_no_data(answer)
    assert raw_error(answer) == raw_error(slow)
    assert not any(name.startswith("x-ratelimit") for name in answer.headers)


@pytest.mark.parametrize("read", list(READS))
async def test_a_key_of_an_agent_suspended_since_is_403(client, admin_key, worker, task_id, read):
    path = path_of(read, task_id)
    await admitted(client, worker["api_key"], path)
    suspended = await client.post(f"/api/v1/admin/agents/{worker['id']}/suspend", headers=bearer(admin_key))
    assert suspended.status_code == 200, suspended.text
    answer = await client.get(path, headers=bearer(worker["api_key"]))
    error = forbidden(answer, "FORBIDDEN")
    assert error["message"] == "Agent is suspended"
    has_no_data(answer)
    slow = await client.get(SLOW_PATH, headers=bearer(worker["api_key"]))
    assert raw_error(answer) == raw_error(slow)


async def test_an_unknown_key_is_counted_by_its_address(conn, task_id):
    """As the slow path counts a bad key: against the address's allowance, so keys cannot be guessed at speed."""
    settings = TEST_SETTINGS.with_overrides(anonymous_rate_limit_per_minute=2)
    async with AsyncTestClient(app=create_app(settings, source=SharedConnectionSource(conn))) as limited:
        unknown = bearer("th_agent_" + "0" * 64)
        refused = [await limited.get(path_of("get", task_id), headers=unknown) for _ in range(3)]
    assert [r.status_code for r in refused] == [401, 401, 429]
    assert refused[2].json()["error"]["code"] == "RATE_LIMITED"


@pytest.mark.parametrize("read", list(READS))
async def test_a_key_over_its_allowance_is_429_with_the_same_headers(conn, poster, worker, read):
    async with limited_client(conn, per_minute=3) as limited:
        task = await post_task(limited, poster)
        path = path_of(read, task)
        headers = bearer(worker["api_key"])
        answered = [await limited.get(path, headers=headers) for _ in range(3)]
        refused = await limited.get(path, headers=headers)
    assert [r.status_code for r in answered] == [200, 200, 200]
    assert [rate_headers(r)[:2] for r in answered] == [(3, 2), (3, 1), (3, 0)]
    assert refused.status_code == 429, refused.text
    has_no_data(refused)
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    retry_after = int(refused.headers["retry-after"])
    assert retry_after >= 1
    assert f"Wait {retry_after} seconds" in refused.json()["error"]["suggestion"]
    assert rate_headers(refused)[:2] == (3, 0)
    assert refused.headers["x-request-id"] == refused.json()["meta"]["request_id"]


async def test_a_400_of_a_revoked_key_is_401(client, conn, worker, task_id):
    """A request that fails before its query is still judged by its key first, as the slow path judges it."""
    await admitted(client, worker["api_key"], READS["browse"])
    await revoke_in_database(conn, worker["api_key"])
    unauthorized(await client.get(READS["browse"] + "?sort=sideways", headers=bearer(worker["api_key"])))
    unauthorized(await client.get("/api/v1/tasks/search?q=", headers=bearer(worker["api_key"])))


async def test_a_400_is_counted_and_has_rate_headers(conn, worker, task_id):
    async with limited_client(conn, per_minute=5) as limited:
        await admitted(limited, worker["api_key"], READS["browse"])
        response = await limited.get(READS["browse"] + "?sort=sideways", headers=bearer(worker["api_key"]))
    assert response.status_code == 400, response.text
    assert rate_headers(response)[:2] == (5, 3)


async def test_a_404_is_counted_and_has_rate_headers(conn, worker, task_id):
    async with limited_client(conn, per_minute=5) as limited:
        await admitted(limited, worker["api_key"], path_of("get", task_id))
        response = await limited.get(path_of("get", task_id + 1000), headers=bearer(worker["api_key"]))
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "TASK_NOT_FOUND"
    assert rate_headers(response)[:2] == (5, 3)


async def test_a_search_without_usable_terms_is_400_and_counted(conn, worker, task_id):
    async with limited_client(conn, per_minute=5) as limited:
        await admitted(limited, worker["api_key"], READS["search"])
        response = await limited.get("/api/v1/tasks/search?q=%26%26", headers=bearer(worker["api_key"]))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == "Search query contains no valid terms"
    assert rate_headers(response)[:2] == (5, 3)


async def test_cursors_walk_a_whole_list(client, poster, worker):
    """A cursor is bound to the key that asked (whose it is is known only once the statement has run)."""
    for n in range(5):
        await post_task(client, poster, f"Write parser number {n}")
    headers = bearer(worker["api_key"])
    first = await client.get(READS["browse"] + "?limit=2", headers=headers)
    assert first.status_code == 200, first.text
    seen = [t["id"] for t in first.json()["data"]]
    cursor = first.json()["meta"]["cursor"]
    while cursor:
        page = await client.get(READS["browse"], params={"limit": 2, "cursor": cursor}, headers=headers)
        assert page.status_code == 200, page.text
        seen += [t["id"] for t in page.json()["data"]]
        cursor = page.json()["meta"]["cursor"]
    assert len(seen) == len(set(seen)) == 5
    searched = await client.get("/api/v1/tasks/search?q=parser&limit=2", headers=headers)
    other = await client.get(
        "/api/v1/tasks/search", params={"q": "parser", "cursor": searched.json()["meta"]["cursor"]}, headers=headers
    )
    assert other.status_code == 200, other.text


async def test_another_callers_cursor_is_refused(client, poster, worker):
    for n in range(3):
        await post_task(client, poster, f"Write parser number {n}")
    theirs = await client.get(READS["browse"] + "?limit=1", headers=bearer(poster["api_key"]))
    await admitted(client, worker["api_key"], READS["browse"])
    response = await client.get(
        READS["browse"],
        params={"limit": 1, "cursor": theirs.json()["meta"]["cursor"]},
        headers=bearer(worker["api_key"]),
    )
    assert response.status_code == 400, response.text


# Round trips, read off libpq's protocol trace of the test's connection (which the app's requests use).


class Trace:
    def __init__(self, text: str) -> None:
        self.text = text

    @property
    def round_trips(self) -> int:
        """Each Sync or simple Query is answered by a ReadyForQuery; a Flush not right after a Sync is a result
        read inside a pipeline, which waits for the server too."""
        sent = re.findall(r"^F\t\d+\t(\w+)", self.text, flags=re.MULTILINE)
        waits = sum(
            1 for before, message in zip(["", *sent], sent, strict=False) if message == "Flush" and before != "Sync"
        )
        return self.text.count("\tReadyForQuery") + waits


def _read_and_remove(path: str) -> str:
    with open(path) as written:
        text = written.read()
    os.unlink(path)
    return text


@asynccontextmanager
async def traced(conn) -> AsyncIterator[Trace]:
    descriptor, path = tempfile.mkstemp(prefix="agora-trace-")
    trace = Trace("")
    try:
        conn.pgconn.trace(descriptor)
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        yield trace
    finally:
        conn.pgconn.untrace()
        os.close(descriptor)
        trace.text = _read_and_remove(path)


@pytest.mark.parametrize("read", list(READS))
async def test_a_read_is_one_round_trip(client, conn, worker, task_id, read):
    path = path_of(read, task_id)
    for _ in range(PREPARED_AFTER):
        await admitted(client, worker["api_key"], path)
        await admitted(client, worker["api_key"], SLOW_PATH)
    async with traced(conn) as read_with_auth:
        await admitted(client, worker["api_key"], path)
    async with traced(conn) as slow:
        await admitted(client, worker["api_key"], SLOW_PATH)
    assert read_with_auth.round_trips == 1
    assert slow.round_trips == 2


@pytest.mark.parametrize("read", list(READS))
async def test_a_refused_callers_statement_reads_no_task(conn, worker, task_id, read):
    """The read's gate is a one-time filter on the caller's row: refused (here by a spent allowance), the plan
    never runs the part that reads tasks."""
    from app.repo import auth as auth_repo
    from app.repo import tasks as task_rows
    from domain.keys import hash_key
    from domain.tasks import Sort, TaskFilter

    query = {
        "get": task_rows.one(task_id),
        "browse": task_rows.browse(TaskFilter(status="open"), Sort.NEWEST, None, 21),
        "search": task_rows.search("parser:*", TaskFilter(status="open"), None, 21),
    }[read]
    # An emission interval longer than the window: the first request creates the caller's row, every later one
    # is refused.
    check = auth_repo.KeyCheck(hash_key(worker["api_key"]), "agent", timedelta(minutes=2), timedelta(minutes=1))
    first, _ = await auth_repo.run_authenticated(conn, check, query)
    assert first is not None and first[1].admitted_tat is not None
    found, result = await auth_repo.run_authenticated(conn, check, query)
    assert found is not None and found[1].admitted_tat is None
    assert result == query.read([])
    statement = auth_repo.authenticated_statement(query)
    cursor = await conn.execute(
        f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {statement}", auth_repo.statement_params(check, query)
    )
    plan = "\n".join(row[0] for row in await cursor.fetchall())
    scans = [line for line in plan.splitlines() if " on task t" in line]
    assert scans, plan
    assert all("never executed" in line for line in scans), plan
