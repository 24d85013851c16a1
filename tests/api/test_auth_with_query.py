"""Reads whose authentication goes out with their query (app.services.auth.StagedAuth).

A key this process admitted lately has GET /tasks/{id}, browse and search send its authentication in the query's
round trip. The answer must be the one the separate authentication gives: the same refusals with the same
envelopes and headers, no data for a refused caller, the same rate limit, and cursors that work across both.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from psycopg import pq

from tests.api.test_auth import forbidden, limited_client, rate_headers, raw_error, revoke_in_database, unauthorized
from tests.conftest import bearer

READS = {
    "get": "/api/v1/tasks/{task}",
    "browse": "/api/v1/tasks",
    "search": "/api/v1/tasks/search?q=parser",
}
SLOW_PATH = "/api/v1/agents/me"  # a read that authenticates first, to compare with
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


async def made_recent(client, key: str, path: str) -> httpx.Response:
    """One admitted request, after which the key is recent and the route's next call is staged."""
    response = await client.get(path, headers=bearer(key))
    assert response.status_code == 200, response.text
    return response


def has_no_data(response: httpx.Response) -> None:
    body = response.json()
    assert body["ok"] is False
    assert "data" not in body
    assert "Write a parser" not in response.text


@pytest.mark.parametrize("read", list(READS))
async def test_a_revoked_recent_key_is_refused_as_on_the_slow_path(client, conn, worker, task_id, read):
    path = path_of(read, task_id)
    await made_recent(client, worker["api_key"], path)
    await revoke_in_database(conn, worker["api_key"])
    staged = await client.get(path, headers=bearer(worker["api_key"]))
    slow = await client.get(SLOW_PATH, headers=bearer(worker["api_key"]))
    unauthorized(staged)
    unauthorized(slow)
    has_no_data(staged)
    assert raw_error(staged) == raw_error(slow)
    assert not any(name.startswith("x-ratelimit") for name in staged.headers)


@pytest.mark.parametrize("read", list(READS))
async def test_a_recent_key_of_an_agent_suspended_since_is_403(client, admin_key, worker, task_id, read):
    path = path_of(read, task_id)
    await made_recent(client, worker["api_key"], path)
    suspended = await client.post(f"/api/v1/admin/agents/{worker['id']}/suspend", headers=bearer(admin_key))
    assert suspended.status_code == 200, suspended.text
    staged = await client.get(path, headers=bearer(worker["api_key"]))
    error = forbidden(staged, "FORBIDDEN")
    assert error["message"] == "Agent is suspended"
    has_no_data(staged)
    slow = await client.get(SLOW_PATH, headers=bearer(worker["api_key"]))
    assert raw_error(staged) == raw_error(slow)


async def test_a_refused_key_is_forgotten_and_its_next_call_authenticates_first(client, conn, worker, task_id):
    """After a refusal the key is no longer recent: its next read runs no query before its authentication."""
    path = path_of("get", task_id)
    await made_recent(client, worker["api_key"], path)
    await revoke_in_database(conn, worker["api_key"])
    unauthorized(await client.get(path, headers=bearer(worker["api_key"])))
    async with traced(conn) as trace:
        unauthorized(await client.get(path, headers=bearer(worker["api_key"])))
    assert "FROM task t" not in trace.text


@pytest.mark.parametrize("read", list(READS))
async def test_a_recent_key_over_its_allowance_is_429_with_the_same_headers(conn, poster, worker, read):
    async with limited_client(conn, per_minute=3) as limited:
        task = await post_task(limited, poster)
        path = path_of(read, task)
        headers = bearer(worker["api_key"])
        admitted = [await limited.get(path, headers=headers) for _ in range(3)]  # the first one, then staged
        refused = await limited.get(path, headers=headers)
    assert [r.status_code for r in admitted] == [200, 200, 200]
    assert [rate_headers(r)[:2] for r in admitted] == [(3, 2), (3, 1), (3, 0)]
    assert refused.status_code == 429, refused.text
    has_no_data(refused)
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    retry_after = int(refused.headers["retry-after"])
    assert retry_after >= 1
    assert f"Wait {retry_after} seconds" in refused.json()["error"]["suggestion"]
    assert rate_headers(refused)[:2] == (3, 0)
    assert refused.headers["x-request-id"] == refused.json()["meta"]["request_id"]


async def test_a_400_of_a_revoked_recent_key_is_401(client, conn, worker, task_id):
    """A request that fails before its query is still judged by its key first, as the slow path judges it."""
    await made_recent(client, worker["api_key"], READS["browse"])
    await revoke_in_database(conn, worker["api_key"])
    unauthorized(await client.get(READS["browse"] + "?sort=sideways", headers=bearer(worker["api_key"])))
    unauthorized(await client.get("/api/v1/tasks/search?q=", headers=bearer(worker["api_key"])))


async def test_a_400_of_a_recent_key_is_counted_and_has_rate_headers(conn, worker, task_id):
    async with limited_client(conn, per_minute=5) as limited:
        await made_recent(limited, worker["api_key"], READS["browse"])
        response = await limited.get(READS["browse"] + "?sort=sideways", headers=bearer(worker["api_key"]))
    assert response.status_code == 400, response.text
    assert rate_headers(response)[:2] == (5, 3)


async def test_a_404_of_a_recent_key_is_counted_and_has_rate_headers(conn, worker, task_id):
    async with limited_client(conn, per_minute=5) as limited:
        await made_recent(limited, worker["api_key"], path_of("get", task_id))
        response = await limited.get(path_of("get", task_id + 1000), headers=bearer(worker["api_key"]))
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "TASK_NOT_FOUND"
    assert rate_headers(response)[:2] == (5, 3)


async def test_a_search_without_usable_terms_is_400_on_the_staged_path(conn, worker, task_id):
    async with limited_client(conn, per_minute=5) as limited:
        await made_recent(limited, worker["api_key"], READS["search"])
        response = await limited.get("/api/v1/tasks/search?q=%26%26", headers=bearer(worker["api_key"]))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == "Search query contains no valid terms"
    assert rate_headers(response)[:2] == (5, 3)


async def test_cursors_work_across_the_first_call_and_the_staged_ones(client, poster, worker):
    """A cursor is bound to whom the key belongs to, known before the staged authentication is settled."""
    for n in range(5):
        await post_task(client, poster, f"Write parser number {n}")
    headers = bearer(worker["api_key"])
    first = await client.get(READS["browse"] + "?limit=2", headers=headers)  # authenticated first: not yet recent
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


async def test_another_callers_cursor_is_refused_on_the_staged_path(client, poster, worker):
    for n in range(3):
        await post_task(client, poster, f"Write parser number {n}")
    theirs = await client.get(READS["browse"] + "?limit=1", headers=bearer(poster["api_key"]))
    await made_recent(client, worker["api_key"], READS["browse"])
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
async def test_a_recent_keys_read_is_one_round_trip(client, conn, worker, task_id, read):
    path = path_of(read, task_id)
    for _ in range(PREPARED_AFTER):
        await made_recent(client, worker["api_key"], path)
        await made_recent(client, worker["api_key"], SLOW_PATH)
    async with traced(conn) as staged:
        await made_recent(client, worker["api_key"], path)
    async with traced(conn) as slow:
        await made_recent(client, worker["api_key"], SLOW_PATH)
    assert staged.round_trips == 1
    assert slow.round_trips == 2


async def test_the_staged_authentication_releases_the_rate_limit_row_before_the_query(conn, worker):
    """The statements after the authentication in the pipeline must not hold the caller's rate-limit row: every
    request of that caller would wait for them."""
    from app.repo import auth as auth_repo
    from app.services.auth import WINDOW
    from domain.keys import hash_key

    async with conn.pipeline():
        sent = await auth_repo.send_authenticate(
            conn, key_hash=hash_key(worker["api_key"]), kind="agent", emission=WINDOW / 60, window=WINDOW
        )
        locks = await conn.execute(
            "SELECT count(*) FROM pg_locks WHERE relation = 'rate_limit'::regclass AND pid = pg_backend_pid()"
        )
    found = await sent.result()
    assert found is not None and found[1].admitted_tat is not None  # it did take the row
    assert (await locks.fetchone()) == (0,)
