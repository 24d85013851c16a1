"""Idempotency-Key against real server processes (reliability.md §1: IDEM-2, IDEM-7, IDEM-8).

Setup data is committed for real (`run_committed_async`), under unique names so nothing collides with other tests.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import psycopg
import pytest

from app.services import operators
from app.services.operators import OperatorCreated
from tests.conftest import bearer
from tests.support import ServerProcesses, run_committed_async, start_servers

pytestmark = [pytest.mark.live, pytest.mark.timeout(60)]

TIMEOUT = httpx.Timeout(15.0)
REPLAYED = "idempotency-replayed"
NO_LIMIT = {"rate_limit_per_minute": "100000"}


@pytest.fixture(scope="module")
def servers(database_url: str):
    """Two ordinary server processes on the test database."""
    started = start_servers(database_url, count=2, **NO_LIMIT)
    yield started
    started.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def new_operator(database_url: str, prefix: str) -> OperatorCreated:
    name = unique(prefix)
    return await run_committed_async(database_url, lambda uow: operators.create_operator(uow, name=name))


async def fetch_one(database_url: str, sql: str, *params: object) -> tuple:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        cursor = await connection.execute(sql, params)
        return await cursor.fetchone()


async def effects(database_url: str, operator_id: int) -> tuple[int, int]:
    """(agents of the operator, agent-bonus transfers of the operator), committed."""
    return await fetch_one(
        database_url,
        "SELECT (SELECT count(*) FROM agent WHERE operator_id = %s),"
        " (SELECT count(*) FROM transfer WHERE operator_id = %s AND kind = 'agent_bonus')",
        operator_id,
        operator_id,
    )


async def ledger_total(database_url: str) -> int:
    (total,) = await fetch_one(database_url, "SELECT coalesce(sum(balance), 0) FROM account")
    return total


async def stored_records(database_url: str, operator_id: int, key: str) -> int:
    (count,) = await fetch_one(
        database_url,
        "SELECT count(*) FROM idempotency_key WHERE principal = %s AND key = %s",
        f"operator:{operator_id}",
        key,
    )
    return count


async def post_settled(http: httpx.AsyncClient, url: str, *, body: dict, headers: dict) -> httpx.Response:
    """POST, retrying (as a client would) while the key is reported in flight, for at most 20 seconds."""
    deadline = time.monotonic() + 20
    while True:
        response = await http.post(url, json=body, headers=headers)
        if response.status_code != 409 or time.monotonic() > deadline:
            return response
        assert response.json()["error"]["code"] == "IDEMPOTENCY_KEY_IN_FLIGHT", response.text
        await asyncio.sleep(0.2)


async def crash_once(fault: ServerProcesses, http: httpx.AsyncClient, *, body: dict, headers: dict) -> None:
    """Send the request to a server set to die mid-request: the connection drops and the process exits."""
    with pytest.raises(httpx.TransportError):
        await http.post(f"{fault.urls[0]}/api/v1/operator/agents", json=body, headers=headers)
    code = await asyncio.to_thread(fault.processes[0].wait, 15)
    assert code == 137, f"the fault point did not fire (exit code {code})"


# IDEM-2 ----------------------------------------------------------------------------------------------------------


async def test_50_concurrent_duplicates_over_two_processes_have_one_effect(database_url, servers):
    operator = await new_operator(database_url, "idem2")
    key = str(uuid.uuid4())
    headers = {**bearer(operator.api_key), "Idempotency-Key": key}
    body = {"name": "Concurrent", "description": "created once", "capabilities": ["python"]}

    async with httpx.AsyncClient(timeout=TIMEOUT, limits=httpx.Limits(max_connections=100)) as http:
        responses = await asyncio.gather(
            *(http.post(f"{servers.urls[i % 2]}/api/v1/operator/agents", json=body, headers=headers) for i in range(50))
        )
        listed = await http.get(f"{servers.urls[0]}/api/v1/operator/agents", headers=bearer(operator.api_key))

    statuses = [r.status_code for r in responses]
    assert not [s for s in statuses if s >= 500], statuses
    assert set(statuses) <= {201, 409}, statuses
    created = [r for r in responses if r.status_code == 201]
    originals = [r for r in created if REPLAYED not in r.headers]
    assert len(originals) == 1, f"{len(originals)} responses claim to be the first"
    assert all(r.headers[REPLAYED] == "true" for r in created if r is not originals[0])
    assert len({r.content for r in created}) == 1, "every 201 must carry the first response, byte for byte"
    for conflict in (r for r in responses if r.status_code == 409):
        assert conflict.json()["error"]["code"] == "IDEMPOTENCY_KEY_IN_FLIGHT", conflict.text

    assert listed.status_code == 200
    assert [a["id"] for a in listed.json()["data"]] == [originals[0].json()["data"]["id"]]
    assert await effects(database_url, operator.operator.id) == (1, 1)
    assert await stored_records(database_url, operator.operator.id, key) == 1
    assert await ledger_total(database_url) == 0

    # Once settled, a late retry on either process is a replay of the same response.
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        for url in servers.urls:
            late = await http.post(f"{url}/api/v1/operator/agents", json=body, headers=headers)
            assert late.status_code == 201 and late.headers[REPLAYED] == "true"
            assert late.content == originals[0].content


# IDEM-7 ----------------------------------------------------------------------------------------------------------


async def test_crash_after_commit_is_replayed_on_retry(database_url, servers):
    operator = await new_operator(database_url, "idem7")
    key = str(uuid.uuid4())
    headers = {**bearer(operator.api_key), "Idempotency-Key": key}
    body = {"name": "Survivor", "description": "committed, never answered"}
    fault = start_servers(database_url, count=1, fault_point="after_commit_before_response", **NO_LIMIT)
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            await crash_once(fault, http, body=body, headers=headers)
    finally:
        fault.stop()

    # The effect and its stored response committed together before the crash.
    assert await effects(database_url, operator.operator.id) == (1, 1)
    assert await stored_records(database_url, operator.operator.id, key) == 1

    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        retry = await post_settled(http, f"{servers.urls[0]}/api/v1/operator/agents", body=body, headers=headers)
        assert retry.status_code == 201, retry.text
        assert retry.headers[REPLAYED] == "true"
        again = await post_settled(http, f"{servers.urls[1]}/api/v1/operator/agents", body=body, headers=headers)
        assert again.status_code == 201 and again.content == retry.content

        # The replay is the lost response itself: its agent key (shown only there) works.
        agent = retry.json()["data"]
        me = await http.get(f"{servers.urls[1]}/api/v1/agents/me", headers=bearer(agent["api_key"]))
        assert me.status_code == 200 and me.json()["data"]["id"] == agent["id"]

    assert await effects(database_url, operator.operator.id) == (1, 1)
    assert await ledger_total(database_url) == 0


# IDEM-8 ----------------------------------------------------------------------------------------------------------


async def test_crash_before_commit_leaves_nothing_and_the_retry_runs_once(database_url, servers):
    operator = await new_operator(database_url, "idem8")
    key = str(uuid.uuid4())
    headers = {**bearer(operator.api_key), "Idempotency-Key": key}
    body = {"name": "Phoenix", "description": "rolled back, then created once"}
    fault = start_servers(database_url, count=1, fault_point="before_commit", **NO_LIMIT)
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            await crash_once(fault, http, body=body, headers=headers)
    finally:
        fault.stop()

    assert await effects(database_url, operator.operator.id) == (0, 0)
    assert await stored_records(database_url, operator.operator.id, key) == 0

    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        retry = await post_settled(http, f"{servers.urls[0]}/api/v1/operator/agents", body=body, headers=headers)
        assert retry.status_code == 201, retry.text
        assert REPLAYED not in retry.headers  # it ran: the crashed attempt left no record
        again = await post_settled(http, f"{servers.urls[1]}/api/v1/operator/agents", body=body, headers=headers)
        assert again.status_code == 201 and again.headers[REPLAYED] == "true"
        assert again.content == retry.content

    assert await effects(database_url, operator.operator.id) == (1, 1)
    assert await stored_records(database_url, operator.operator.id, key) == 1
    assert await ledger_total(database_url) == 0
