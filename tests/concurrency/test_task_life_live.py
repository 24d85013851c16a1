"""Races of issue 13's task life against two real server processes whose sweepers run every 50 ms.

Each race fires its requests at once (`asyncio.gather`), spread over both processes, while both sweepers pick due
tasks: 16 agents taking one instant task; an instant claim against the task's expiry; a delivery against the end of
its lease; a cancel against the expiry. To race the clock, a trial sets the deadline a few milliseconds ahead on the
committed database (by the database's clock, which is what the servers judge by) and fires after a random pause, so
that both orders happen. Whatever the order, exactly one effect must win, the task's escrow must be refunded once or
not at all, and the ledger audit must be clean after every race. A last test leaves due tasks untouched and waits
for the sweepers alone.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter

import httpx
import pytest

from tests.concurrency.test_races_live import (
    LIMITS,
    TIMEOUT,
    assert_ledger_ok,
    codes,
    fetch_one,
    report,
    tally,
    wallet,
)
from tests.conftest import bearer
from tests.live_marketplace import DESCRIPTION, Party, adjust, new_party, unique
from tests.support import start_servers

pytestmark = [pytest.mark.live, pytest.mark.timeout(600)]

# 100 trials per race, the figure; AGORA_RACE_TRIALS=30 gives a quicker run while developing.
TRIALS = int(os.environ.get("AGORA_RACE_TRIALS", "100"))
SWEEP_SECONDS = "0.05"
LATER = "2099-01-01T00:00:00Z"
BUDGET = 60


@pytest.fixture(scope="module")
def servers(database_url: str):
    started = start_servers(database_url, count=2, rate_limit_per_minute="1000000", task_sweep_seconds=SWEEP_SECONDS)
    yield started
    started.stop()


async def post_task(http: httpx.AsyncClient, url: str, poster: Party, **fields) -> int:
    body = {"title": unique("life"), "description": DESCRIPTION, "budget_credits": BUDGET, **fields}
    response = await http.post(f"{url}/api/v1/tasks", json=body, headers=bearer(poster.key))
    assert response.status_code == 201, response.text
    return response.json()["data"]["id"]


async def deadline_in(database_url: str, task_id: int, column: str, milliseconds: float) -> None:
    """Set the task's `expires_at` or `lease_expires_at` this many milliseconds after the database's now."""
    assert column in ("expires_at", "lease_expires_at")
    await fetch_one(
        database_url,
        f"UPDATE task SET {column} = statement_timestamp() + %s * interval '1 millisecond' WHERE id = %s RETURNING id",
        milliseconds,
        task_id,
    )


async def after_a_moment() -> None:
    await asyncio.sleep(random.uniform(0, 0.03))


async def task_row(database_url: str, task_id: int) -> tuple:
    """(status, claimed_by_agent_id, lease_expires_at, escrow balance, refunds, deliverables, accepted claims)."""
    return await fetch_one(
        database_url,
        "SELECT t.status, t.claimed_by_agent_id, t.lease_expires_at, e.balance,"
        " (SELECT count(*) FROM transfer x WHERE x.task_id = t.id AND x.kind = 'refund'),"
        " (SELECT count(*) FROM deliverable d WHERE d.task_id = t.id),"
        " (SELECT count(*) FROM claim c WHERE c.task_id = t.id AND c.status = 'accepted')"
        " FROM task t JOIN account e ON e.task_id = t.id WHERE t.id = %s",
        task_id,
    )


# --- sixteen agents, one instant task -------------------------------------------------------------------------------


async def test_sixteen_agents_take_one_instant_task_exactly_one_wins(database_url, servers):
    takers = 16
    totals, error_codes = Counter(), Counter()
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS) as http:
        url = servers.urls[0]
        poster = await new_party(database_url, http, url, "il-poster")
        await adjust(database_url, poster.operator_id, BUDGET * TRIALS)
        workers = [await new_party(database_url, http, servers.urls[1], f"il-w{n}", agents=4) for n in range(4)]
        keys = [(key, agent) for party in workers for key, agent in zip(party.agent_keys, party.agent_ids, strict=True)]
        for _ in range(TRIALS):
            task_id = await post_task(http, url, poster, claim_mode="instant")
            responses = await asyncio.gather(
                *(
                    http.post(f"{servers.urls[i % 2]}/api/v1/tasks/{task_id}/claims", json={}, headers=bearer(key))
                    for i, (key, _) in enumerate(keys)
                )
            )
            statuses = tally(responses)
            totals += statuses
            error_codes += codes(responses)
            assert statuses == Counter({201: 1, 409: takers - 1}), statuses
            assert set(codes(responses)) == {"TASK_NOT_OPEN"}
            (winner,) = [r.json()["data"] for r in responses if r.status_code == 201]
            assert (winner["status"], winner["proposed_credits"]) == ("accepted", BUDGET)
            status, worker, _, escrow, refunds, _, accepted = await task_row(database_url, task_id)
            assert (status, worker, escrow, refunds, accepted) == ("claimed", winner["agent_id"], BUDGET, 0, 1)
            (claims,) = await fetch_one(database_url, "SELECT count(*) FROM claim WHERE task_id = %s", task_id)
            assert claims == 1, "a refused claim left a row behind"
    report("instant claim x16", TRIALS, totals, error_codes)
    await assert_ledger_ok(database_url)


# --- expiry against a claim -----------------------------------------------------------------------------------------


async def test_expiry_against_an_instant_claim_exactly_one_effect(database_url, servers):
    winners, totals = Counter(), Counter()
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS) as http:
        poster = await new_party(database_url, http, servers.urls[0], "ie-poster")
        worker = await new_party(database_url, http, servers.urls[1], "ie-worker")
        await adjust(database_url, poster.operator_id, BUDGET * TRIALS)
        for trial in range(TRIALS):
            task_id = await post_task(http, servers.urls[0], poster, claim_mode="instant", expires_at=LATER)
            before = await wallet(database_url, poster.operator_id)
            await deadline_in(database_url, task_id, "expires_at", random.uniform(0, 30))
            await after_a_moment()
            path = f"/api/v1/tasks/{task_id}"
            taking, reading = await asyncio.gather(
                http.post(f"{servers.urls[trial % 2]}{path}/claims", json={}, headers=bearer(worker.key)),
                http.get(f"{servers.urls[(trial + 1) % 2]}{path}", headers=bearer(poster.key)),
            )
            totals += tally([taking, reading])
            assert reading.status_code == 200, reading.text
            status, claimed_by, _, escrow, refunds, _, accepted = await task_row(database_url, task_id)
            if taking.status_code == 201:
                winners["claim"] += 1
                assert (status, claimed_by, escrow, refunds, accepted) == ("claimed", worker.agent_ids[0], BUDGET, 0, 1)
                assert await wallet(database_url, poster.operator_id) == before
                assert reading.json()["data"]["status"] in ("open", "claimed")
            else:
                winners["expiry"] += 1
                assert (taking.status_code, taking.json()["error"]["code"]) == (409, "TASK_NOT_OPEN"), taking.text
                assert "expired" in taking.json()["error"]["message"]
                assert (status, claimed_by, escrow, refunds, accepted) == ("expired", None, 0, 1, 0)
                assert await wallet(database_url, poster.operator_id) == before + BUDGET
                assert reading.json()["data"]["status"] in ("open", "expired")
    print(f"\nexpiry vs instant claim: {TRIALS} trials, statuses {dict(totals)}, winners {dict(winners)}")
    await assert_ledger_ok(database_url)


# --- a lease's end against a delivery -------------------------------------------------------------------------------


async def test_a_lease_end_against_a_delivery_never_both(database_url, servers):
    winners, totals = Counter(), Counter()
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS) as http:
        poster = await new_party(database_url, http, servers.urls[0], "il-poster")
        worker = await new_party(database_url, http, servers.urls[1], "il-worker")
        await adjust(database_url, poster.operator_id, BUDGET * TRIALS)
        for trial in range(TRIALS):
            task_id = await post_task(http, servers.urls[0], poster, claim_mode="instant", assignment_hours=1)
            taken = await http.post(
                f"{servers.urls[1]}/api/v1/tasks/{task_id}/claims", json={}, headers=bearer(worker.key)
            )
            assert taken.status_code == 201, taken.text
            await deadline_in(database_url, task_id, "lease_expires_at", random.uniform(0, 30))
            await after_a_moment()
            delivery = await http.post(
                f"{servers.urls[trial % 2]}/api/v1/tasks/{task_id}/deliverables",
                json={"content": "just in time?"},
                headers=bearer(worker.key),
            )
            totals += tally([delivery])
            status, claimed_by, lease, escrow, refunds, deliverables, accepted = await task_row(database_url, task_id)
            assert (escrow, refunds) == (BUDGET, 0), "a lease end or a delivery moved money"
            if delivery.status_code == 201:
                winners["delivery"] += 1
                assert (status, claimed_by, lease, deliverables, accepted) == (
                    "delivered",
                    worker.agent_ids[0],
                    None,
                    1,
                    1,
                )
            else:
                winners["lease end"] += 1
                assert (delivery.status_code, delivery.json()["error"]["code"]) == (409, "INVALID_STATUS"), (
                    delivery.text
                )
                assert "lease" in delivery.json()["error"]["message"]
                assert (status, claimed_by, lease, deliverables, accepted) == ("open", None, None, 0, 0)
    print(f"\nlease end vs delivery: {TRIALS} trials, statuses {dict(totals)}, winners {dict(winners)}")
    await assert_ledger_ok(database_url)


# --- expiry against a cancel ----------------------------------------------------------------------------------------


async def test_expiry_against_a_cancel_refunds_once(database_url, servers):
    winners, totals = Counter(), Counter()
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS) as http:
        poster = await new_party(database_url, http, servers.urls[0], "ic-poster")
        await adjust(database_url, poster.operator_id, BUDGET * TRIALS)
        for trial in range(TRIALS):
            before = await wallet(database_url, poster.operator_id)
            task_id = await post_task(http, servers.urls[0], poster, expires_at=LATER)
            await deadline_in(database_url, task_id, "expires_at", random.uniform(0, 30))
            await after_a_moment()
            cancel = await http.post(
                f"{servers.urls[trial % 2]}/api/v1/tasks/{task_id}/cancel", headers=bearer(poster.key)
            )
            totals += tally([cancel])
            status, _, _, escrow, refunds, _, _ = await task_row(database_url, task_id)
            assert (escrow, refunds) == (0, 1), "the escrow was not refunded exactly once"
            assert await wallet(database_url, poster.operator_id) == before, "the refund is not the whole budget"
            if cancel.status_code == 200:
                winners["cancel"] += 1
                assert status == "cancelled"
            else:
                winners["expiry"] += 1
                assert (cancel.status_code, cancel.json()["error"]["code"]) == (409, "INVALID_STATUS"), cancel.text
                assert status == "expired"
    print(f"\nexpiry vs cancel: {TRIALS} trials, statuses {dict(totals)}, winners {dict(winners)}")
    await assert_ledger_ok(database_url)


# --- nobody touches the task ----------------------------------------------------------------------------------------


async def test_the_sweepers_alone_expire_tasks_and_end_leases(database_url, servers):
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS) as http:
        poster = await new_party(database_url, http, servers.urls[0], "is-poster")
        worker = await new_party(database_url, http, servers.urls[1], "is-worker")
        await adjust(database_url, poster.operator_id, BUDGET * 20)
        expiring = [await post_task(http, servers.urls[0], poster, expires_at=LATER) for _ in range(10)]
        leased = [
            await post_task(http, servers.urls[0], poster, claim_mode="instant", assignment_hours=1) for _ in range(10)
        ]
        for task_id in leased:
            response = await http.post(
                f"{servers.urls[1]}/api/v1/tasks/{task_id}/claims", json={}, headers=bearer(worker.key)
            )
            assert response.status_code == 201, response.text
        for task_id in expiring:
            await deadline_in(database_url, task_id, "expires_at", 0)
        for task_id in leased:
            await deadline_in(database_url, task_id, "lease_expires_at", 0)
        started = time.monotonic()
        while time.monotonic() - started < 10:
            (left,) = await fetch_one(
                database_url,
                "SELECT (SELECT count(*) FROM task WHERE id = ANY(%s) AND status = 'open')"
                " + (SELECT count(*) FROM task WHERE id = ANY(%s) AND status = 'claimed')",
                expiring,
                leased,
            )
            if left == 0:
                break
            await asyncio.sleep(0.05)
        took = time.monotonic() - started
        assert left == 0, f"{left} due tasks still unchanged after {took:.1f} s"
        print(f"\nsweepers: 10 expiries and 10 lease ends written in {took:.2f} s without a request")
        for task_id in expiring:
            assert (await task_row(database_url, task_id))[:5] == ("expired", None, None, 0, 1)
        for task_id in leased:
            assert (await task_row(database_url, task_id))[:5] == ("open", None, None, BUDGET, 0)
    await assert_ledger_ok(database_url)
