"""Who hears of what (domain.events), and what follows a delivery attempt (domain.deliveries.judge_attempt)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from domain import events
from domain.deliveries import DeliveryStatus, DisablePolicy, EndpointHealth, judge_attempt
from domain.events import EventType
from domain.tasks import TaskState, TaskStatus

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def task(status: TaskStatus = TaskStatus.OPEN, worker: int | None = None) -> TaskState:
    return TaskState(
        id=7,
        poster_operator_id=1,
        poster_agent_id=10,
        status=status,
        budget_credits=100,
        claimed_by_agent_id=worker,
        price_credits=80 if worker else None,
        max_revisions=2,
        assignment=1 if worker else 0,
        title="Parse PDFs",
    )


def recipients(built: list[events.Event], kind: EventType) -> list[int | None]:
    return [e.agent_id for e in built if e.type is kind]


def test_a_status_change_goes_to_the_public_stream_and_each_party_once():
    built = events.status_changed(task(), TaskStatus.CLAIMED, claimed_by_agent_id=20, parties=(10, 20, 10, None))
    assert recipients(built, EventType.TASK_STATUS) == [None, 10, 20]
    assert built[0].data == {
        "task_id": 7,
        "title": "Parse PDFs",
        "status": "claimed",
        "previous_status": "open",
        "claimed_by_agent_id": 20,
    }


def test_posting_announces_to_the_poster_and_asks_the_database_for_matches():
    built, match = events.task_posted(
        task_id=7,
        title="Parse PDFs with Python",
        budget_credits=100,
        category_id=3,
        poster_agent_id=10,
        poster_operator_id=1,
    )
    assert recipients(built, EventType.TASK_CREATED) == [10]
    assert recipients(built, EventType.TASK_STATUS) == [None]
    assert built[0].data["previous_status"] is None
    assert match.terms == ("parse", "pdfs", "with", "python")
    assert match.poster_operator_id == 1 and match.category_id == 3


def test_match_terms_are_lower_case_unique_and_bounded():
    assert events.match_terms("C++ and c++ and Node.js.", ["Rust"]) == ("c++", "and", "node.js", "rust")
    assert len(events.match_terms(" ".join(f"w{i}" for i in range(500)))) == events.MAX_MATCH_TERMS


def test_accepting_a_bid_tells_the_winner_and_the_parties():
    built = events.bid_accepted(task(), claim_id=5, agent_id=20, price_credits=80)
    assert recipients(built, EventType.CLAIM_ACCEPTED) == [20]
    assert recipients(built, EventType.TASK_STATUS) == [None, 10, 20]


def test_delivery_review_and_payment_reach_the_right_side():
    claimed = task(TaskStatus.CLAIMED, worker=20)
    assert recipients(
        events.work_delivered(claimed, deliverable_id=3, agent_id=20, revision_number=1),
        EventType.DELIVERABLE_SUBMITTED,
    ) == [10]
    delivered = task(TaskStatus.DELIVERED, worker=20)
    assert recipients(
        events.revision_requested(delivered, deliverable_id=3, notes="more"), EventType.DELIVERABLE_REVISION_REQUESTED
    ) == [20]
    accepted = events.work_accepted(delivered, deliverable_id=3, credits_paid=72, platform_fee=8)
    assert recipients(accepted, EventType.DELIVERABLE_ACCEPTED) == [20]
    assert accepted[0].data["status"] == "completed"


def test_cancel_and_rollback_tell_poster_and_worker():
    claimed = task(TaskStatus.CLAIMED, worker=20)
    assert recipients(events.task_cancelled(claimed), EventType.TASK_CANCELLED) == [10, 20]
    assert recipients(events.task_cancelled(task()), EventType.TASK_CANCELLED) == [10]
    rolled = events.task_rolled_back(claimed)
    assert recipients(rolled, EventType.TASK_ROLLED_BACK) == [10, 20]
    assert rolled[0].data["status"] == "open" and rolled[0].data["previous_status"] == "claimed"


def test_ping_is_not_subscribable():
    assert "webhook.ping" not in events.SUBSCRIBABLE
    assert "claim.accepted" in events.SUBSCRIBABLE


POLICY = DisablePolicy(after_failures=3, after_seconds=3600)
HEALTHY = EndpointHealth(is_active=True, failure_count=0, failing_since=None, now=NOW)


def judge(**overrides):
    arguments = {
        "succeeded": False,
        "response_status": 500,
        "retry_after_seconds": None,
        "attempts_in_round": 1,
        "health": HEALTHY,
        "policy": POLICY,
        "rng": random.Random(1),
    }
    return judge_attempt(**{**arguments, **overrides})


def test_a_success_ends_the_delivery():
    verdict = judge(succeeded=True, response_status=200)
    assert verdict.status is DeliveryStatus.SUCCEEDED and not verdict.counts_as_failure


def test_a_failure_is_retried_on_the_schedule_until_it_runs_out():
    first = judge(attempts_in_round=1)
    assert first.status is DeliveryStatus.PENDING and 4.5 <= first.retry_in_seconds <= 5.5
    assert judge(attempts_in_round=2).retry_in_seconds == pytest.approx(300, rel=0.11)
    last = judge(attempts_in_round=8)
    assert last.status is DeliveryStatus.FAILED and last.retry_in_seconds is None


def test_gone_disables_at_once():
    verdict = judge(response_status=410)
    assert verdict.status is DeliveryStatus.FAILED
    assert verdict.disable_reason == "the endpoint answered 410 Gone"


def test_throttling_waits_at_least_retry_after_and_does_not_count():
    verdict = judge(response_status=429, retry_after_seconds=120)
    assert verdict.retry_in_seconds >= 120 and not verdict.counts_as_failure
    scaled = judge(response_status=429, retry_after_seconds=7, attempts_in_round=1, scale=0.01)
    assert scaled.retry_in_seconds >= 0.07


def test_a_long_failure_streak_disables_but_a_short_burst_does_not():
    burst = EndpointHealth(True, failure_count=5, failing_since=NOW - timedelta(seconds=10), now=NOW)
    assert judge(health=burst).disable_reason is None
    streak = EndpointHealth(True, failure_count=2, failing_since=NOW - timedelta(hours=2), now=NOW)
    assert judge(health=streak).disable_reason.startswith("3 consecutive failed attempts")
    throttled = judge(health=streak, response_status=429)
    assert throttled.disable_reason is None
    already_off = EndpointHealth(False, failure_count=20, failing_since=NOW - timedelta(days=2), now=NOW)
    assert judge(health=already_off).disable_reason is None


def test_webhook_disabled_goes_to_the_endpoints_owner_only_with_its_reason():
    (event,) = events.webhook_disabled(owner_agent_id=7, webhook_id=3, url="https://example.test/h", reason="gone")
    assert (event.type, event.agent_id, event.task_id) == (EventType.WEBHOOK_DISABLED, 7, None)
    assert event.data == {"webhook_id": 3, "url": "https://example.test/h", "reason": "gone"}


def test_a_disabled_callback_tells_its_poster_agent_naming_the_task_with_its_metadata():
    (event,) = events.webhook_disabled(
        owner_agent_id=7, webhook_id=3, url="https://example.test/cb", reason="gone", task_id=42, metadata={"ref": 1}
    )
    assert (event.type, event.agent_id, event.task_id) == (EventType.WEBHOOK_DISABLED, 7, 42)
    assert event.data == {
        "webhook_id": 3,
        "url": "https://example.test/cb",
        "reason": "gone",
        "task_id": 42,
        "metadata": {"ref": 1},
    }
    (plain,) = events.webhook_disabled(owner_agent_id=7, webhook_id=3, url="https://e.test/", reason="x", task_id=42)
    assert "metadata" not in plain.data


def test_webhook_ping_names_the_endpoint_it_tests():
    assert events.webhook_ping(9) == {"webhook_id": 9, "message": "Test delivery from Agora"}
