"""The delivery log against what the receiver saw, under faults (issue 19): a real `agora worker` is SIGKILLed while
its requests are held, or loses its database connection between an answer and its record. Every request the receiver
saw is listed, as its outcome or as `interrupted` when that was lost, and attempt_count is the number listed.

Same setting as test_webhook_delivery_live.py (whose API process, workers and helpers these use): an API process
that sends nothing, local receivers that misbehave on cue, the retry schedule compressed.
"""

from __future__ import annotations

import signal
from datetime import datetime

import psycopg
import pytest

from tests.concurrency import test_webhook_delivery_live as live
from tests.concurrency.test_webhook_delivery_live import (
    Agora,
    eventually,
    rows,
    settled,
    verify,
    worker_process,
)
from tests.webhook_receiver import Received, Receiver, Reply

pytestmark = [pytest.mark.live, pytest.mark.timeout(180)]

# The fixtures of the webhook live tests: an API process of this module's own, and the webhook owner's client.
api_url = live.api_url
agora = live.agora


def moment(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def seen_for(receiver: Receiver, delivery_id: int) -> list[Received]:
    return [r for r in receiver.requests if r.header("X-TaskHive-Delivery") == f"whd_{delivery_id}"]


def matches_receiver(delivery: dict, seen: list[Received]) -> None:
    """The log against the receiver: one attempt per request, in order, each listed as it went, or as interrupted
    when its outcome was lost (then the receiver may or may not have answered it)."""
    attempts = delivery["attempts"]
    assert delivery["attempt_count"] == len(attempts), delivery
    assert [a["attempt_number"] for a in attempts] == list(range(1, len(attempts) + 1))
    # Every attempt here was sent, so the receiver saw each one: none missing from the log, none extra.
    assert len(attempts) == len(seen), (attempts, [(r.reply.status, r.answered) for r in seen])
    assert len({r.webhook_id for r in seen}) == 1, "every attempt is the same message"
    for attempt, request in zip(attempts, seen, strict=True):
        # Started (claimed) before its request arrived; same machine, same clock.
        assert moment(attempt["started_at"]) <= request.at + 0.05, (attempt, request.at)
        if attempt["outcome"] == "interrupted":
            assert attempt["duration_ms"] is None and attempt["response_status"] is None, attempt
        else:
            assert request.answered and attempt["response_status"] == request.reply.status, (attempt, request)


async def lease_over(database_url: str, delivery_id: int) -> bool:
    ((over,),) = await rows(
        database_url, "SELECT next_attempt_at <= now() FROM webhook_delivery WHERE id = %s", delivery_id
    )
    return over


async def test_attempts_a_killed_worker_was_making_are_listed_as_interrupted(agora: Agora, database_url):
    """Three deliveries held by the receiver when `agora worker` is SIGKILLed: while the claims run their attempts
    are in progress, once they run out interrupted, and the next worker's attempts come after them."""
    receiver = Receiver(*[Reply(hang=True)] * 3, then=Reply(200))
    async with receiver:
        party = await agora.party("log-kill")
        hook = await agora.webhook(party, receiver.url("/log-kill"))
        async with worker_process(database_url, webhook_timeout_seconds="3", webhook_retry_scale="0.001") as worker:
            pings = [await agora.ping(hook) for _ in range(3)]
            await receiver.wait_for(3, within=15)
            worker.process.kill()
            assert await worker.process.wait() == -signal.SIGKILL
        ids = [p["id"] for p in pings]

        # The claims (3 s + 5 s) still run: each attempt is listed, in progress. (Checked after the read, so that
        # a machine too slow to read within the lease cannot make this fail, only skip it.)
        log = {d["id"]: d for d in await agora.deliveries(hook)}
        if not any([await lease_over(database_url, i) for i in ids]):
            for delivery_id in ids:
                delivery = log[delivery_id]
                assert delivery["attempt_count"] == 1 and len(delivery["attempts"]) == 1, delivery
                (attempt,) = delivery["attempts"]
                assert attempt["outcome"] == "in_progress" and attempt["duration_ms"] is None, attempt
                assert attempt["next_attempt_at"] == delivery["next_attempt_at"], "the claim's end"

        # Run out, and no worker running: interrupted, and still only the one attempt.
        for delivery_id in ids:
            await eventually(lambda delivery_id=delivery_id: lease_over(database_url, delivery_id), within=15)
        for delivery in await agora.deliveries(hook):
            assert delivery["status"] == "pending" and delivery["attempt_count"] == 1, delivery
            (attempt,) = delivery["attempts"]
            assert attempt["outcome"] == "interrupted" and attempt["started_at"], attempt
        assert all(r.gone_at is not None and not r.answered for r in receiver.requests)

        async with worker_process(database_url, webhook_timeout_seconds="3", webhook_retry_scale="0.001"):
            for delivery_id in ids:
                assert await settled(database_url, delivery_id, within=20) == 2

    log = {d["id"]: d for d in await agora.deliveries(hook)}
    for delivery_id in ids:
        delivery = log[delivery_id]
        assert [a["outcome"] for a in delivery["attempts"]] == ["interrupted", "succeeded"], delivery
        seen = seen_for(receiver, delivery_id)
        matches_receiver(delivery, seen)
        verify(seen[-1], hook.secret)
        # The interrupted attempt is the one whose request the killed worker left hanging.
        assert not seen[0].answered and seen[1].answered
    # Stored as the log reads: the next claim wrote the interruption down.
    stored = await rows(
        database_url,
        """SELECT a.outcome, count(*) FROM webhook_attempt a WHERE a.delivery_id = ANY (%s) GROUP BY 1 ORDER BY 1""",
        ids,
    )
    assert stored == [("interrupted", 3), ("succeeded", 3)]
    print(f"\ndelivery log after SIGKILL: 3 deliveries, receiver saw {receiver.hits} requests, log lists 6 attempts")


async def test_an_outcome_lost_with_the_database_connection_is_listed_as_interrupted(agora: Agora, database_url):
    """The receiver answers 200, but the worker's connection is cut before the answer is recorded: after the claim
    runs out the delivery is sent again (the receiver sees it twice) and the log lists both attempts, the first
    interrupted. The cut is made where it hurts: the worker waits on the endpoint's row lock to record, and its
    backend is terminated there."""
    receiver = Receiver(Reply(delay=1.0), then=Reply(200))
    async with receiver:
        party = await agora.party("log-cut")
        hook = await agora.webhook(party, receiver.url("/log-cut"))
        async with (
            worker_process(database_url, webhook_timeout_seconds="2", webhook_retry_scale="0.001") as worker,
            await psycopg.AsyncConnection.connect(database_url, autocommit=True) as locker,
        ):
            ping = await agora.ping(hook)
            await receiver.wait_for(1, within=15)  # held for a second: lock the endpoint meanwhile
            await locker.execute("BEGIN")
            await locker.execute("SELECT 1 FROM webhook WHERE id = %s FOR UPDATE", (hook.id,))
            locker_pid = locker.info.backend_pid
            await receiver.wait_for(1, answered_status=200, within=10)

            async def recording() -> list[tuple]:
                return await rows(
                    database_url,
                    "SELECT pid FROM pg_stat_activity WHERE %s = ANY (pg_blocking_pids(pid))",
                    locker_pid,
                )

            ((recorder,),) = await eventually(recording, within=10)
            ((terminated,),) = await rows(database_url, "SELECT pg_terminate_backend(%s)", recorder)
            assert terminated

            async def not_recorded() -> list[dict]:
                lines = worker.logged("webhook_attempt_not_recorded")
                return [line for line in lines if line.get("delivery_id") == ping["id"]]

            await eventually(not_recorded, within=10)
            await locker.execute("ROLLBACK")

            (attempt,) = (await agora.delivery(hook, ping["id"]))["attempts"]
            assert attempt["outcome"] in ("in_progress", "interrupted") and attempt["response_status"] is None
            # After the claim (2 s + 5 s) runs out the same worker sends it again.
            assert await settled(database_url, ping["id"], within=20) == 2

    delivery = await agora.delivery(hook, ping["id"])
    assert [a["outcome"] for a in delivery["attempts"]] == ["interrupted", "succeeded"], delivery
    seen = seen_for(receiver, ping["id"])
    matches_receiver(delivery, seen)
    # The receiver got it twice, answering 200 both times: at-least-once, deduplicated on webhook-id.
    assert [(r.answered, r.reply.status) for r in seen] == [(True, 200), (True, 200)]
    for request in seen:
        verify(request, hook.secret)
    assert seen[0].webhook_id == seen[1].webhook_id == f"evt_{ping['event_id']}"
    print(
        f"\ndelivery log after a lost record: receiver saw {len(seen)} requests, log lists {len(delivery['attempts'])}"
    )
