"""The per-caller rate limit across two server processes (reliability.md §6.5: RL-1, RL-3).

The limit is a GCRA in PostgreSQL: `LIMIT` requests at once, then one per 60/LIMIT seconds, shared by all processes.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid

import httpx
import pytest

from app.services import operators
from app.services.agents import AgentProfile
from tests.conftest import bearer
from tests.support import run_committed, start_servers

pytestmark = [pytest.mark.live, pytest.mark.timeout(60)]

LIMIT = 20
TIMEOUT = httpx.Timeout(15.0)


@pytest.fixture(scope="module")
def servers(database_url: str):
    started = start_servers(database_url, count=2, rate_limit_per_minute=str(LIMIT))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def agent_keys(database_url: str) -> list[str]:
    """Keys of three fresh agents (none has made a request yet), committed."""

    async def setup(uow) -> list[str]:
        operator = await operators.create_operator(uow, name=f"rl-{uuid.uuid4().hex[:12]}")
        keys = []
        for n in range(3):
            profile = AgentProfile(name=f"rl-agent-{n}", description="rate limited")
            created = await operators.create_agent(uow, operator_id=operator.operator.id, profile=profile)
            keys.append(created.api_key)
        return keys

    return run_committed(database_url, setup)


async def burst(http: httpx.AsyncClient, urls: list[str], key: str, count: int) -> tuple[list[httpx.Response], float]:
    """`count` concurrent authenticated requests for one key, alternating between the processes."""
    started = time.monotonic()
    responses = await asyncio.gather(
        *(http.get(f"{urls[i % len(urls)]}/api/v1/agents/me", headers=bearer(key)) for i in range(count))
    )
    return list(responses), time.monotonic() - started


def admitted_bound(elapsed: float) -> int:
    return LIMIT + math.ceil(elapsed * LIMIT / 60)


def check_responses(responses: list[httpx.Response]) -> int:
    """Every response is a 200 or a well-formed 429; returns the number of 200s."""
    for response in responses:
        assert response.status_code in (200, 429), response.text
        assert response.headers["x-ratelimit-limit"] == str(LIMIT)
        assert int(response.headers["x-ratelimit-remaining"]) >= 0
        if response.status_code == 429:
            assert response.json()["error"]["code"] == "RATE_LIMITED"
            assert int(response.headers["retry-after"]) >= 1
    return sum(r.status_code == 200 for r in responses)


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=TIMEOUT, limits=httpx.Limits(max_connections=200))


async def test_rl1_one_key_over_two_processes_gets_its_allowance_and_no_more(servers, agent_keys):
    async with client() as http:
        responses, elapsed = await burst(http, servers.urls, agent_keys[0], 100)

    admitted = check_responses(responses)
    assert LIMIT <= admitted <= admitted_bound(elapsed), f"{admitted} admitted in {elapsed:.2f}s"
    assert sum(r.status_code == 429 for r in responses) == 100 - admitted


async def test_rl3_a_saturated_key_leaves_another_keys_allowance_whole(servers, agent_keys):
    key_a, key_b = agent_keys[1], agent_keys[2]
    async with client() as http:
        started = time.monotonic()
        saturated, _ = await burst(http, servers.urls, key_a, 40)
        admitted_a = check_responses(saturated)
        assert admitted_a >= LIMIT and any(r.status_code == 429 for r in saturated)

        # Key A keeps pushing while key B spends its own allowance, at the same time.
        (more_a, _), (for_b, _) = await asyncio.gather(
            burst(http, servers.urls, key_a, 20), burst(http, servers.urls, key_b, LIMIT)
        )
        elapsed_a = time.monotonic() - started

    assert check_responses(for_b) == LIMIT, [r.status_code for r in for_b]
    admitted_a += check_responses(more_a)
    assert admitted_a <= admitted_bound(elapsed_a), f"key A: {admitted_a} admitted in {elapsed_a:.2f}s"


async def test_requests_without_a_valid_key_share_one_address_budget_over_two_processes(servers):
    # Issue 11: 105 wrong keys in a row were all answered 401. Now the address has a budget of its own (default 30
    # a minute), exact across processes like the keys' own.
    budget = 30
    wrong = bearer("th_agent_" + "0" * 64)
    async with client() as http:
        started = time.monotonic()
        responses = await asyncio.gather(
            *(http.get(f"{servers.urls[i % 2]}/api/v1/agents/me", headers=wrong) for i in range(105))
        )
        elapsed = time.monotonic() - started
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {401, 429}
    refused = statuses.count(401)
    assert budget <= refused <= budget + math.ceil(elapsed * budget / 60), f"{refused} answered in {elapsed:.2f}s"
    for response in responses:
        if response.status_code == 429:
            assert response.json()["error"]["code"] == "RATE_LIMITED"
            assert int(response.headers["retry-after"]) >= 1
