"""Contract tests of time passing on tasks (issue 13): expiry with refund, and claim leases.

Time is not waited for: a test posts a task with a far expiry (or a lease), then moves that deadline a second into
the past on its own database (life_steps.passes), as the database's clock would. What is due is written by the
first request that touches the task (a read, a bid, an accept, a cancel, a delivery), or by the sweeper
(app.services.task_clock.sweep, run here in-process); a write that finds it due answers for the task as it then is,
and the change stays committed even though that write is refused.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from app.services import task_clock
from tests.api.life_steps import (
    LATER,
    TASKS,
    act,
    audit,
    balance,
    bid,
    claim,
    claims_of,
    code,
    deliver,
    events_of,
    get_task,
    last_event,
    passes,
    post_task,
    row,
    taken,
    task_ledger,
)
from tests.conftest import bearer


async def expiring(client, conn, poster, **fields) -> dict:
    """An open task whose expiry has just passed (not written yet)."""
    task = await post_task(client, poster, expires_at=LATER, **fields)
    await passes(conn, task["id"], "expires_at")
    return task


# --- expiry ---------------------------------------------------------------------------------------------------------


async def test_reading_a_task_past_its_expiry_expires_it_refunds_it_and_tells_everyone(
    client, conn, admin_key, poster, worker, rival
):
    task = await post_task(client, poster, expires_at=LATER, metadata={"batch": 7})
    first, second = await bid(client, worker, task["id"], 90), await bid(client, rival, task["id"], 80)
    before = await balance(client, poster)
    await passes(conn, task["id"], "expires_at")
    mark = await last_event(conn)
    shown = await get_task(client, worker, task["id"])
    assert shown["status"] == "expired"
    assert await task_ledger(conn, task["id"]) == ("expired", 0, 1)
    assert await balance(client, poster) == before + 120
    assert await claims_of(client, poster, task["id"]) == {first["id"]: "rejected", second["id"]: "rejected"}
    written = await events_of(conn, task["id"], mark)
    expired = {agent: data for kind, agent, data in written if kind == "task.expired"}
    assert sorted(expired) == sorted([poster["id"], worker["id"], rival["id"]])
    assert expired[poster["id"]]["metadata"] == {"batch": 7} and "metadata" not in expired[worker["id"]]
    assert expired[worker["id"]]["refunded_credits"] == 120
    rejected = {agent: data["reason"] for kind, agent, data in written if kind == "claim.rejected"}
    assert rejected == {worker["id"]: "the task expired", rival["id"]: "the task expired"}
    assert {agent for kind, agent, data in written if kind == "task.status"} == {None, poster["id"]}
    # Read again: nothing more happens (one refund).
    assert (await get_task(client, poster, task["id"]))["status"] == "expired"
    assert await task_ledger(conn, task["id"]) == ("expired", 0, 1)
    report = await audit(client, admin_key)
    assert report["ok"] and report["violations"]["L12"] == 0


@pytest.mark.parametrize("read", ["claims", "deliverables"])
async def test_every_read_of_the_task_expires_it_first(client, conn, poster, read):
    task = await expiring(client, conn, poster)
    response = await client.get(f"{TASKS}/{task['id']}/{read}", headers=bearer(poster["api_key"]))
    assert response.status_code == 200, response.text
    assert await task_ledger(conn, task["id"]) == ("expired", 0, 1)


async def test_a_bid_on_a_task_past_its_expiry_expires_it_and_is_refused(client, conn, poster, worker):
    task = await expiring(client, conn, poster)
    refused = await claim(client, worker, task["id"], proposed_credits=50)
    assert (refused.status_code, code(refused)) == (409, "TASK_NOT_OPEN")
    assert "expired" in refused.json()["error"]["message"]
    assert await task_ledger(conn, task["id"]) == ("expired", 0, 1)  # committed, though the bid was refused


async def test_an_instant_claim_past_the_expiry_is_refused_and_the_refusal_replayed_with_its_key(
    client, conn, poster, worker
):
    task = await expiring(client, conn, poster, claim_mode="instant")
    headers = {**bearer(worker["api_key"]), "Idempotency-Key": "late-claim-1"}
    first = await client.post(f"{TASKS}/{task['id']}/claims", json={}, headers=headers)
    assert (first.status_code, code(first)) == (409, "TASK_NOT_OPEN")
    assert await task_ledger(conn, task["id"]) == ("expired", 0, 1)  # kept under the key's commit too
    again = await client.post(f"{TASKS}/{task['id']}/claims", json={}, headers=headers)
    assert again.content == first.content and again.headers.get("idempotency-replayed") == "true"
    assert await task_ledger(conn, task["id"]) == ("expired", 0, 1)


async def test_accepting_a_bid_cancelling_or_rolling_back_past_the_expiry_is_refused(client, conn, poster, worker):
    for action in ("accept", "cancel", "rollback"):
        task = await post_task(client, poster, expires_at=LATER)
        placed = await bid(client, worker, task["id"])
        await passes(conn, task["id"], "expires_at")
        path = {
            "accept": f"/{task['id']}/claims/{placed['id']}/accept",
            "cancel": f"/{task['id']}/cancel",
            "rollback": f"/{task['id']}/rollback",
        }[action]
        refused = await act(client, poster, path)
        expected = "TASK_NOT_OPEN" if action == "accept" else "INVALID_STATUS"
        assert (refused.status_code, code(refused)) == (409, expected), (action, refused.text)
        assert "expired" in refused.json()["error"]["message"]
        assert await task_ledger(conn, task["id"]) == ("expired", 0, 1), action
        assert await claims_of(client, poster, task["id"]) == {placed["id"]: "rejected"}


async def test_browse_and_search_list_a_task_past_its_expiry_as_expired_only(client, conn, poster, worker):
    task = await expiring(client, conn, poster, title="Transcribe podcast")
    kept = await post_task(client, poster, title="Transcribe podcast again", expires_at=LATER)

    async def listed(path: str, **params) -> dict[int, str]:
        response = await client.get(path, params=params, headers=bearer(worker["api_key"]))
        assert response.status_code == 200, response.text
        return {t["id"]: t["status"] for t in response.json()["data"]}

    for status in ("open", "expired"):
        found = await listed(TASKS, status=status)
        searched = await listed(f"{TASKS}/search", q="transcribe", status=status)
        wanted = {task["id"]: "expired"} if status == "expired" else {kept["id"]: "open"}
        assert (found, searched) == (wanted, wanted), status
    assert (await row(conn, "SELECT status FROM task WHERE id = %s", task["id"]))[0] == "open"  # lists write nothing
    await get_task(client, poster, task["id"])
    assert await listed(TASKS, status="expired") == {task["id"]: "expired"}  # and once written, the same


async def test_the_sweeper_expires_due_tasks_once_whatever_touches_them(client, conn, uow, admin_key, poster, worker):
    due = [await expiring(client, conn, poster) for _ in range(3)]
    open_task = await post_task(client, poster, expires_at=LATER)
    assert await task_clock.sweep(uow, limit=2) == 2  # a batch at most
    assert await task_clock.sweep(uow, limit=100) == 1
    assert await task_clock.sweep(uow, limit=100) == 0
    for task in due:
        assert await task_ledger(conn, task["id"]) == ("expired", 0, 1)
        assert (await get_task(client, poster, task["id"]))["status"] == "expired"
    assert await task_ledger(conn, open_task["id"]) == ("open", 120, 0)
    assert (await audit(client, admin_key))["ok"]


async def test_the_audit_counts_an_expired_task_that_was_not_refunded(client, conn, admin_key, poster):
    task = await post_task(client, poster)
    assert (await audit(client, admin_key))["violations"]["L12"] == 0
    await conn.execute("UPDATE task SET status = 'expired' WHERE id = %s", (task["id"],))  # no refund
    report = await audit(client, admin_key)
    assert not report["ok"] and report["violations"]["L12"] == 1


# --- leases ---------------------------------------------------------------------------------------------------------


def _hours_from(value: str, start: str) -> float:
    return (datetime.fromisoformat(value) - datetime.fromisoformat(start)) / timedelta(hours=1)


async def test_an_assignment_starts_a_lease_and_the_first_delivery_ends_it(client, conn, poster, worker):
    task = await post_task(client, poster, assignment_hours=6)
    placed = await bid(client, worker, task["id"])
    assert (await get_task(client, poster, task["id"]))["lease_expires_at"] is None
    accepted = await act(client, poster, f"/{task['id']}/claims/{placed['id']}/accept")
    assert accepted.status_code == 200
    (started,) = await row(conn, "SELECT updated_at FROM task WHERE id = %s", task["id"])
    shown = await get_task(client, poster, task["id"])
    # From the clock of the accept's lock read, a moment before its update's `updated_at`.
    assert shown["assignment_hours"] == 6
    assert abs(_hours_from(shown["lease_expires_at"], started.isoformat()) - 6) < 1 / 3600
    assert (await deliver(client, worker, task["id"])).status_code == 201
    assert (await get_task(client, poster, task["id"]))["lease_expires_at"] is None


async def test_an_instant_claim_starts_a_lease_that_rollback_and_cancel_end(client, poster, worker):
    for ending in ("rollback", "cancel"):
        task = await post_task(client, poster, claim_mode="instant", assignment_hours=1)
        await taken(client, worker, task["id"])
        assert (await get_task(client, poster, task["id"]))["lease_expires_at"] is not None
        assert (await act(client, poster, f"/{task['id']}/{ending}")).status_code == 200
        assert (await get_task(client, poster, task["id"]))["lease_expires_at"] is None


async def test_a_task_without_assignment_hours_has_no_lease(client, poster, worker):
    task = await post_task(client, poster, claim_mode="instant")
    await taken(client, worker, task["id"])
    shown = await get_task(client, poster, task["id"])
    assert (shown["assignment_hours"], shown["lease_expires_at"]) == (None, None)


async def test_a_lease_that_runs_out_reopens_the_task_with_a_rollbacks_effects(client, conn, admin_key, poster, worker):
    task = await post_task(client, poster, claim_mode="instant", assignment_hours=2, metadata={"k": 1})
    made = await taken(client, worker, task["id"])
    await passes(conn, task["id"], "lease_expires_at")
    mark = await last_event(conn)
    shown = await get_task(client, worker, task["id"])
    assert (shown["status"], shown["claimed_by_agent_id"], shown["lease_expires_at"]) == ("open", None, None)
    assert await task_ledger(conn, task["id"]) == ("open", 120, 0)  # the escrow is still held
    assert await claims_of(client, poster, task["id"]) == {made["id"]: "rejected"}
    written = await events_of(conn, task["id"], mark)
    lapsed = {agent: data for kind, agent, data in written if kind == "claim.lease_expired"}
    assert sorted(lapsed) == sorted([poster["id"], worker["id"]])
    assert (lapsed[worker["id"]]["claim_id"], lapsed[worker["id"]]["agent_id"]) == (made["id"], worker["id"])
    assert lapsed[poster["id"]]["metadata"] == {"k": 1} and "metadata" not in lapsed[worker["id"]]
    rejected = [(agent, data["reason"]) for kind, agent, data in written if kind == "claim.rejected"]
    assert rejected == [(worker["id"], "the assignment's lease ended before a delivery")]
    assert (await audit(client, admin_key))["ok"]


@pytest.mark.parametrize("ended_by", ["the delivery", "a read", "the sweeper"])
async def test_a_delivery_after_the_lease_end_is_told_the_lease_ended(client, conn, uow, poster, worker, ended_by):
    task = await post_task(client, poster, claim_mode="instant", assignment_hours=1)
    await taken(client, worker, task["id"])
    await passes(conn, task["id"], "lease_expires_at")
    if ended_by == "a read":
        await get_task(client, poster, task["id"])
    elif ended_by == "the sweeper":
        assert await task_clock.sweep(uow, limit=10) == 1
    late = await deliver(client, worker, task["id"])
    assert (late.status_code, code(late)) == (409, "INVALID_STATUS"), late.text
    assert "lease" in late.json()["error"]["message"]
    assert await task_ledger(conn, task["id"]) == ("open", 120, 0)
    (deliverables,) = await row(conn, "SELECT count(*) FROM deliverable WHERE task_id = %s", task["id"])
    assert deliverables == 0


async def test_the_next_worker_after_a_lease_end_gets_full_revision_rounds(client, conn, poster, worker, rival):
    task = await post_task(client, poster, assignment_hours=3, max_revisions=0)
    first = await bid(client, worker, task["id"])
    assert (await act(client, poster, f"/{task['id']}/claims/{first['id']}/accept")).status_code == 200
    await passes(conn, task["id"], "lease_expires_at")
    second = await bid(client, rival, task["id"])  # the bid finds the lease over: the task is open again
    assert (await act(client, poster, f"/{task['id']}/claims/{second['id']}/accept")).status_code == 200
    delivered = await deliver(client, rival, task["id"])
    assert delivered.status_code == 201 and delivered.json()["data"]["revision_number"] == 1
    refused = await deliver(client, worker, task["id"])  # someone else's assignment now: not the lapsed one's
    assert (refused.status_code, code(refused)) == (403, "NOT_CLAIMED_BY_YOU")


async def test_a_lease_end_then_a_passed_expiry_are_both_written_before_the_next_bid(client, conn, poster, worker):
    task = await post_task(client, poster, claim_mode="instant", assignment_hours=1, expires_at=LATER)
    await taken(client, worker, task["id"])
    await passes(conn, task["id"], "expires_at")  # no effect while claimed
    await passes(conn, task["id"], "lease_expires_at")
    refused = await claim(client, worker, task["id"])
    assert (refused.status_code, code(refused)) == (409, "TASK_NOT_OPEN")
    assert await task_ledger(conn, task["id"]) == ("expired", 0, 1)
