"""Races on the marketplace against two real server processes (reliability.md §4.2: PG-1 to PG-5).

Every request of a race is fired at once (`asyncio.gather`) and spread over both processes, so the requests really
contend for the same rows through different connection pools. Setup data is committed for real under unique names.
After each race, and once more at the end of the module, the ledger invariants of §3.2 are checked on the committed
database: by our own SQL checks below, by `app.services.audit.run_audit`, and at the end by the audit endpoint of
both processes.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter

import httpx
import psycopg
import pytest

from app.services import admin
from app.services.audit import run_audit
from tests.conftest import bearer
from tests.live_marketplace import Flow, Party, adjust, new_party, unique
from tests.support import run_committed_async, start_servers

pytestmark = [pytest.mark.live, pytest.mark.timeout(300)]

# 100 trials per race, the figure; AGORA_RACE_TRIALS=30 gives a quicker run while developing.
TRIALS = int(os.environ.get("AGORA_RACE_TRIALS", "100"))

TIMEOUT = httpx.Timeout(30.0)
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100)
NO_LIMIT = {"rate_limit_per_minute": "1000000"}
DESCRIPTION = "A task posted by the race tests; nobody works on it for real."


@pytest.fixture(scope="module")
def servers(database_url: str):
    """Two ordinary server processes on the test database, for the whole module."""
    started = start_servers(database_url, count=2, **NO_LIMIT)
    yield started
    started.stop()


# Invariants ------------------------------------------------------------------------------------------------------

LIVE = "('open','claimed','in_progress','delivered')"

# Each query counts the rows that break one invariant of reliability.md §3.2.
INVARIANT_QUERIES = {
    "L1": "SELECT count(*) FROM (SELECT transfer_id FROM entry GROUP BY transfer_id"
    " HAVING sum(amount) <> 0 OR count(*) < 2) broken",
    "L2": "SELECT (coalesce(sum(balance), 0) <> 0)::int FROM account",
    "L3": "SELECT count(*) FROM account a WHERE a.balance <>"
    " (SELECT coalesce(sum(e.amount), 0) FROM entry e WHERE e.account_id = a.id)",
    "L5": "SELECT count(*) FROM account WHERE kind <> 'platform_issuance' AND balance < 0",
    "L6": "SELECT count(*) FROM task t JOIN account e ON e.task_id = t.id"
    f" WHERE (t.status IN {LIVE} AND e.balance <> t.budget_credits)"
    f" OR (t.status NOT IN {LIVE} AND e.balance <> 0)",
    "L7": "SELECT count(*) FROM task t WHERE"
    " (SELECT count(*) FROM transfer x WHERE x.task_id = t.id AND x.kind = 'settlement')"
    " <> (t.status = 'completed')::int"
    " OR (SELECT count(*) FROM transfer x WHERE x.task_id = t.id AND x.kind = 'refund')"
    " <> (t.status IN ('cancelled','expired'))::int",
}


async def sql_violations(database_url: str) -> dict[str, int]:
    """Our own checks, on one consistent snapshot of the committed ledger."""
    found = {}
    async with (
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection,
        connection.transaction(),
    ):
        await connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        for name, query in INVARIANT_QUERIES.items():
            (count,) = await (await connection.execute(query)).fetchone()
            found[name] = count
    return found


async def assert_ledger_ok(database_url: str) -> None:
    violations = await sql_violations(database_url)
    assert not any(violations.values()), f"ledger invariants broken: {violations}"
    report = await run_committed_async(database_url, run_audit)
    assert report.ok, f"audit: {report.violations}"


async def fetch_one(database_url: str, sql: str, *params: object) -> tuple:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        return await (await connection.execute(sql, params)).fetchone()


async def task_ledger(database_url: str, task_id: int) -> tuple[str, int, int, int]:
    """(status, escrow balance, settlement transfers, refund transfers) of one task, committed."""
    return await fetch_one(
        database_url,
        "SELECT t.status, e.balance,"
        " (SELECT count(*) FROM transfer x WHERE x.task_id = t.id AND x.kind = 'settlement'),"
        " (SELECT count(*) FROM transfer x WHERE x.task_id = t.id AND x.kind = 'refund')"
        " FROM task t JOIN account e ON e.task_id = t.id WHERE t.id = %s",
        task_id,
    )


async def wallet(database_url: str, operator_id: int) -> int:
    (balance,) = await fetch_one(database_url, "SELECT balance FROM account WHERE operator_id = %s", operator_id)
    return balance


# Actors ----------------------------------------------------------------------------------------------------------


def tally(responses: list[httpx.Response]) -> Counter:
    return Counter(r.status_code for r in responses)


def codes(responses: list[httpx.Response]) -> Counter:
    return Counter(r.json()["error"]["code"] for r in responses if r.status_code >= 400)


def report(name: str, trials: int, totals: Counter, error_codes: Counter) -> None:
    print(f"\n{name}: {trials} trials, statuses {dict(sorted(totals.items()))}, error codes {dict(error_codes)}")


# PG-1 ------------------------------------------------------------------------------------------------------------


async def test_pg1_sixteen_concurrent_accepts_of_one_deliverable_pay_once(database_url, servers):
    budget, price = 100, 80
    split_worker = price - price * 10 // 100
    totals, error_codes = Counter(), Counter()
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS) as http:
        flow = Flow(http, servers.urls[0])
        poster = await new_party(database_url, http, servers.urls[0], "pg1-poster")
        worker = await new_party(database_url, http, servers.urls[1], "pg1-worker")
        await adjust(database_url, poster.operator_id, budget * TRIALS)
        for _ in range(TRIALS):
            task_id = await flow.post_task(poster, budget)
            await flow.assign(task_id, poster, worker, price)
            deliverable_id = await flow.deliver(task_id, worker)
            before = await wallet(database_url, worker.operator_id)

            path = f"/api/v1/tasks/{task_id}/deliverables/{deliverable_id}/accept"
            responses = await asyncio.gather(
                *(http.post(f"{servers.urls[i % 2]}{path}", headers=bearer(poster.key)) for i in range(16))
            )
            statuses = tally(responses)
            totals += statuses
            error_codes += codes(responses)
            assert statuses == Counter({200: 1, 409: 15}), statuses
            assert set(codes(responses)) == {"INVALID_STATUS"}
            assert await task_ledger(database_url, task_id) == ("completed", 0, 1, 0)
            assert await wallet(database_url, worker.operator_id) - before == split_worker, "worker not paid once"
    report("PG-1", TRIALS, totals, error_codes)
    await assert_ledger_ok(database_url)


# PG-2 ------------------------------------------------------------------------------------------------------------


async def test_pg2_twenty_concurrent_posts_cannot_double_spend_one_wallet(database_url, servers):
    totals, error_codes = Counter(), Counter()
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS) as http:
        for _ in range(TRIALS):
            poster = await new_party(database_url, http, servers.urls[0], "pg2-poster")
            balance = await wallet(database_url, poster.operator_id)
            assert await adjust(database_url, poster.operator_id, 100 - balance) == 100

            async def post(i: int, poster: Party = poster) -> httpx.Response:
                body = {"title": unique("spend"), "description": DESCRIPTION, "budget_credits": 80}
                headers = {**bearer(poster.key), "Idempotency-Key": str(uuid.uuid4())}
                return await http.post(f"{servers.urls[i % 2]}/api/v1/tasks", json=body, headers=headers)

            responses = await asyncio.gather(*(post(i) for i in range(20)))
            statuses = tally(responses)
            totals += statuses
            error_codes += codes(responses)
            assert statuses == Counter({201: 1, 422: 19}), statuses
            assert codes(responses) == Counter({"INSUFFICIENT_CREDITS": 19})
            assert await wallet(database_url, poster.operator_id) == 20
            (tasks, holds) = await fetch_one(
                database_url,
                "SELECT (SELECT count(*) FROM task WHERE poster_operator_id = %s),"
                " (SELECT count(*) FROM transfer WHERE operator_id = %s AND kind = 'escrow_hold')",
                poster.operator_id,
                poster.operator_id,
            )
            assert (tasks, holds) == (1, 1), "a refused post left a task or a hold behind"
    report("PG-2", TRIALS, totals, error_codes)
    await assert_ledger_ok(database_url)


# PG-3 ------------------------------------------------------------------------------------------------------------


async def test_pg3_thirty_two_concurrent_bid_accepts_assign_the_task_once(database_url, servers):
    bidders = 32
    totals, error_codes = Counter(), Counter()
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS) as http:
        flow = Flow(http, servers.urls[0])
        poster = await new_party(database_url, http, servers.urls[0], "pg3-poster")
        await adjust(database_url, poster.operator_id, 100 * TRIALS)
        workers = [
            await new_party(database_url, http, servers.urls[1], f"pg3-worker{n}", agents=bidders // 4)
            for n in range(4)
        ]
        keys = [key for party in workers for key in party.agent_keys]
        for _ in range(TRIALS):
            task_id = await flow.post_task(poster, 100)
            claim_ids = await asyncio.gather(*(flow.bid(task_id, key, 50 + i) for i, key in enumerate(keys)))

            responses = await asyncio.gather(
                *(
                    http.post(
                        f"{servers.urls[i % 2]}/api/v1/tasks/{task_id}/claims/{claim_id}/accept",
                        headers=bearer(poster.key),
                    )
                    for i, claim_id in enumerate(claim_ids)
                )
            )
            statuses = tally(responses)
            totals += statuses
            error_codes += codes(responses)
            assert statuses == Counter({200: 1, 409: bidders - 1}), statuses
            assert set(codes(responses)) == {"TASK_NOT_OPEN"}
            (winner,) = [r.json()["data"]["claim_id"] for r in responses if r.status_code == 200]
            row = await fetch_one(
                database_url,
                "SELECT t.status, t.accepted_claim_id, t.price_credits,"
                " (SELECT count(*) FROM claim c WHERE c.task_id = t.id AND c.status = 'accepted'),"
                " (SELECT count(*) FROM claim c WHERE c.task_id = t.id AND c.status = 'rejected'),"
                " (SELECT proposed_credits FROM claim c WHERE c.id = t.accepted_claim_id)"
                " FROM task t WHERE t.id = %s",
                task_id,
            )
            assert row[:4] == ("claimed", winner, row[5], 1), row
            assert row[4] == bidders - 1, row
    report("PG-3", TRIALS, totals, error_codes)
    await assert_ledger_ok(database_url)


# PG-4 ------------------------------------------------------------------------------------------------------------


async def race(
    http: httpx.AsyncClient, servers, first: tuple[str, str, dict | None], second: tuple[str, str, dict | None]
):
    """Two POSTs at once, on different processes; each is (path, key, body)."""
    return await asyncio.gather(
        *(
            http.post(f"{servers.urls[i]}/api/v1{path}", json=body, headers=bearer(key))
            for i, (path, key, body) in enumerate((first, second))
        )
    )


async def test_pg4_accept_bid_vs_cancel_on_an_open_task(database_url, servers):
    """Cancel is allowed on open *and* claimed tasks, so both serial orders are legal:
    cancel first (the accept then finds the task cancelled: 409 TASK_NOT_OPEN), or accept first (the task is claimed,
    and the cancel still succeeds on it). In both, the task ends cancelled, refunded once and never paid.
    """
    budget = 60
    orders, totals = Counter(), Counter()
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS) as http:
        flow = Flow(http, servers.urls[0])
        poster = await new_party(database_url, http, servers.urls[0], "pg4a-poster")
        worker = await new_party(database_url, http, servers.urls[1], "pg4a-worker")
        await adjust(database_url, poster.operator_id, budget * TRIALS)
        for _ in range(TRIALS):
            before = await wallet(database_url, poster.operator_id)
            task_id = await flow.post_task(poster, budget)
            claim_id = await flow.bid(task_id, worker.key, 40)
            accept, cancel = await race(
                http,
                servers,
                (f"/tasks/{task_id}/claims/{claim_id}/accept", poster.key, None),
                (f"/tasks/{task_id}/cancel", poster.key, None),
            )
            totals += tally([accept, cancel])
            assert cancel.status_code == 200, cancel.text
            if accept.status_code == 200:
                orders["accept, then cancel"] += 1
            else:
                assert (accept.status_code, accept.json()["error"]["code"]) == (409, "TASK_NOT_OPEN"), accept.text
                orders["cancel, then accept refused"] += 1
            assert await task_ledger(database_url, task_id) == ("cancelled", 0, 0, 1)
            (claim_status,) = await fetch_one(database_url, "SELECT status FROM claim WHERE id = %s", claim_id)
            assert claim_status == "rejected"
            assert await wallet(database_url, poster.operator_id) == before, "the refund is not the whole budget"
    print(f"\nPG-4 accept-bid vs cancel: {TRIALS} trials, statuses {dict(totals)}, orders {dict(orders)}")
    await assert_ledger_ok(database_url)


async def test_pg4_a_bid_withdrawn_while_its_accept_waits_for_the_lock_is_not_accepted(database_url, servers):
    """The accept reads the bid after it holds the task's lock: a bid withdrawn by the transaction it waited for is
    seen withdrawn (409 INVALID_STATUS), never accepted as the pending bid it was before the wait (the task would
    be assigned to a withdrawn bid). The withdrawal holds the lock here on purpose, so the order is certain."""
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS) as http:
        flow = Flow(http, servers.urls[0])
        poster = await new_party(database_url, http, servers.urls[0], "pg4w-poster")
        worker = await new_party(database_url, http, servers.urls[1], "pg4w-worker")
        await adjust(database_url, poster.operator_id, 60)
        task_id = await flow.post_task(poster, 60)
        claim_id = await flow.bid(task_id, worker.key, 40)
        async with await psycopg.AsyncConnection.connect(database_url) as withdrawal:
            await withdrawal.execute("SELECT id FROM task WHERE id = %s FOR UPDATE", (task_id,))
            await withdrawal.execute("UPDATE claim SET status = 'withdrawn' WHERE id = %s", (claim_id,))
            accept = asyncio.create_task(
                http.post(
                    f"{servers.urls[0]}/api/v1/tasks/{task_id}/claims/{claim_id}/accept", headers=bearer(poster.key)
                )
            )
            for _ in range(200):  # until the accept waits on the task's lock
                (waiting,) = await fetch_one(
                    database_url,
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database()",
                )
                if waiting or accept.done():
                    break
                await asyncio.sleep(0.02)
            assert waiting, "the accept never waited for the task's lock"
            await withdrawal.commit()
        response = await accept
    assert (response.status_code, response.json()["error"]["code"]) == (409, "INVALID_STATUS"), response.text
    row = await fetch_one(
        database_url,
        "SELECT t.status, t.claimed_by_agent_id, c.status FROM task t JOIN claim c ON c.task_id = t.id WHERE c.id = %s",
        claim_id,
    )
    assert row == ("open", None, "withdrawn"), row


async def test_pg4_cancel_vs_delivery_on_a_claimed_task(database_url, servers):
    """Exactly one wins: delivered first (the cancel is refused, 409) or cancelled first (the worker no longer holds
    the task, 403 NOT_CLAIMED_BY_YOU). Never both, and never paid and refunded."""
    budget = 60
    winners, totals = Counter(), Counter()
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS) as http:
        flow = Flow(http, servers.urls[0])
        poster = await new_party(database_url, http, servers.urls[0], "pg4b-poster")
        worker = await new_party(database_url, http, servers.urls[1], "pg4b-worker")
        await adjust(database_url, poster.operator_id, budget * TRIALS)
        for _ in range(TRIALS):
            task_id = await flow.post_task(poster, budget)
            await flow.assign(task_id, poster, worker, 40)
            cancel, deliver = await race(
                http,
                servers,
                (f"/tasks/{task_id}/cancel", poster.key, None),
                (f"/tasks/{task_id}/deliverables", worker.key, {"content": "just in time"}),
            )
            totals += tally([cancel, deliver])
            assert [cancel.status_code, deliver.status_code].count(500) == 0
            if cancel.status_code == 200:
                winners["cancel"] += 1
                assert (deliver.status_code, deliver.json()["error"]["code"]) == (403, "NOT_CLAIMED_BY_YOU")
                assert await task_ledger(database_url, task_id) == ("cancelled", 0, 0, 1)
            else:
                winners["delivery"] += 1
                assert deliver.status_code == 201, deliver.text
                assert (cancel.status_code, cancel.json()["error"]["code"]) == (409, "INVALID_STATUS")
                assert await task_ledger(database_url, task_id) == ("delivered", budget, 0, 0)
    print(f"\nPG-4 cancel vs delivery: {TRIALS} trials, statuses {dict(totals)}, winners {dict(winners)}")
    await assert_ledger_ok(database_url)


async def test_pg4_accept_deliverable_vs_cancel_on_a_delivered_task(database_url, servers):
    """A delivered task cannot be cancelled at all: the accept always wins, the cancel is always 409."""
    budget, price = 60, 40
    totals = Counter()
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS) as http:
        flow = Flow(http, servers.urls[0])
        poster = await new_party(database_url, http, servers.urls[0], "pg4c-poster")
        worker = await new_party(database_url, http, servers.urls[1], "pg4c-worker")
        await adjust(database_url, poster.operator_id, budget * TRIALS)
        for _ in range(TRIALS):
            task_id = await flow.post_task(poster, budget)
            await flow.assign(task_id, poster, worker, price)
            deliverable_id = await flow.deliver(task_id, worker)
            accept, cancel = await race(
                http,
                servers,
                (f"/tasks/{task_id}/deliverables/{deliverable_id}/accept", poster.key, None),
                (f"/tasks/{task_id}/cancel", poster.key, None),
            )
            totals += tally([accept, cancel])
            assert accept.status_code == 200, accept.text
            assert (cancel.status_code, cancel.json()["error"]["code"]) == (409, "INVALID_STATUS"), cancel.text
            assert await task_ledger(database_url, task_id) == ("completed", 0, 1, 0)
    print(f"\nPG-4 accept-deliverable vs cancel: {TRIALS} trials, statuses {dict(totals)}")
    await assert_ledger_ok(database_url)


# PG-5 ------------------------------------------------------------------------------------------------------------


async def test_pg5_revision_vs_accept_on_one_deliverable(database_url, servers):
    """Exactly one wins; the end state is the winner's: completed and settled once, or in_progress with the
    deliverable sent back and no settlement."""
    budget, price = 60, 40
    winners, totals = Counter(), Counter()
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS) as http:
        flow = Flow(http, servers.urls[0])
        poster = await new_party(database_url, http, servers.urls[0], "pg5-poster")
        worker = await new_party(database_url, http, servers.urls[1], "pg5-worker")
        await adjust(database_url, poster.operator_id, budget * TRIALS)
        for _ in range(TRIALS):
            task_id = await flow.post_task(poster, budget)
            await flow.assign(task_id, poster, worker, price)
            deliverable_id = await flow.deliver(task_id, worker)
            path = f"/tasks/{task_id}/deliverables/{deliverable_id}"
            revise, accept = await race(
                http,
                servers,
                (f"{path}/revision", poster.key, {"revision_notes": "more, please"}),
                (f"{path}/accept", poster.key, None),
            )
            totals += tally([revise, accept])
            assert sorted([revise.status_code, accept.status_code]) == [200, 409], (revise.text, accept.text)
            loser = revise if accept.status_code == 200 else accept
            assert loser.json()["error"]["code"] == "INVALID_STATUS", loser.text
            (deliverable_status,) = await fetch_one(
                database_url, "SELECT status FROM deliverable WHERE id = %s", deliverable_id
            )
            if accept.status_code == 200:
                winners["accept"] += 1
                assert await task_ledger(database_url, task_id) == ("completed", 0, 1, 0)
                assert deliverable_status == "accepted"
            else:
                winners["revision"] += 1
                assert await task_ledger(database_url, task_id) == ("in_progress", budget, 0, 0)
                assert deliverable_status == "revision_requested"
    print(f"\nPG-5 revision vs accept: {TRIALS} trials, statuses {dict(totals)}, winners {dict(winners)}")
    await assert_ledger_ok(database_url)


# After all the races ---------------------------------------------------------------------------------------------


async def test_ledger_invariants_hold_after_all_races(database_url, servers):
    await assert_ledger_ok(database_url)
    admin_key = await run_committed_async(database_url, lambda uow: admin.create_admin_key(uow, name=unique("races")))
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        reports = [
            await http.get(f"{url}/api/v1/admin/ledger/audit", headers=bearer(admin_key)) for url in servers.urls
        ]
    for response in reports:
        assert response.status_code == 200, response.text
        audit = response.json()["data"]
        assert audit["ok"] and not any(audit["violations"].values()), audit
    # Both processes read the same committed ledger: the same content hash.
    assert len({r.json()["data"]["ledger_hash"] for r in reports}) == 1
