"""Issue 13's task life in the domain, with no database: instant claims (domain.bids), expiry and lease ends
(domain.clock), a directed task's invisibility to everyone else, and the lease an assignment starts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import bids, clock, deliverables, transitions
from domain.bids import BidderState, ClaimFacts, LockedBid
from domain.deliverables import DeliveryState
from domain.errors import DomainError
from domain.events import REJECTED_FOR_EXPIRY, REJECTED_FOR_LEASE_END, EventType
from domain.ledger import Posting, TransferKind
from domain.tasks import Actor, ClaimMode, ClaimStatus, TaskState, TaskStatus
from domain.transitions import LockedTask, TaskAccounts

POSTER = Actor(agent_id=10, operator_id=1)
WORKER = Actor(agent_id=20, operator_id=2)
OTHER_WORKER = Actor(agent_id=21, operator_id=4)
STRANGER = Actor(agent_id=30, operator_id=3)
ACCOUNTS = TaskAccounts(escrow=500, poster_wallet=501, worker_wallet=502, revenue=503)
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)

OPEN = TaskState(
    id=7,
    poster_operator_id=POSTER.operator_id,
    poster_agent_id=POSTER.agent_id,
    status=TaskStatus.OPEN,
    budget_credits=120,
    claimed_by_agent_id=None,
    price_credits=None,
    max_revisions=2,
    assignment=0,
    title="Parse PDFs",
    read_at=NOW,
)
INSTANT = replace(OPEN, claim_mode=ClaimMode.INSTANT)
CLAIMED = replace(
    OPEN,
    status=TaskStatus.CLAIMED,
    claimed_by_agent_id=WORKER.agent_id,
    price_credits=100,
    accepted_claim_id=70,
    assignment=1,
    assignment_hours=4,
    lease_expires_at=NOW + 4 * 3600 * SECOND,
)


def code_of(decide: Callable[[], object]) -> str | None:
    try:
        decide()
    except DomainError as error:
        return error.code
    return None


def locked(task: TaskState) -> LockedTask:
    return LockedTask(task=task, accounts=ACCOUNTS)


def take(task: TaskState, actor: Actor = WORKER, credits: int | None = None, pending: bool = False):
    return bids.place_bid(
        BidderState(task=task, has_pending_bid=pending), actor, proposed_credits=credits, message=None
    )


# --- instant claims -------------------------------------------------------------------------------------------


def test_an_instant_claim_takes_the_task_at_its_budget_and_tells_the_worker():
    placement = take(INSTANT)
    assert placement.claim.status is ClaimStatus.ACCEPTED
    assert placement.claim.proposed_credits == INSTANT.budget_credits
    update = placement.update(claim_id=71)
    assert update is not None and update.status is TaskStatus.CLAIMED
    assert update.assign is not None
    assert (update.assign.agent_id, update.assign.claim_id, update.assign.price_credits) == (20, 71, 120)
    assert update.assign.number == INSTANT.assignment + 1  # a fresh assignment: full revision rounds
    assert update.assign.lease_expires_at is None  # no assignment_hours, no lease
    events = placement.events(71)
    accepted = [e for e in events if e.type is EventType.CLAIM_ACCEPTED]
    assert [(e.agent_id, e.data["claim_id"], e.data["price_credits"]) for e in accepted] == [(20, 71, 120)]
    statuses = {e.agent_id: e.data["status"] for e in events if e.type is EventType.TASK_STATUS}
    assert statuses == {None: "claimed", POSTER.agent_id: "claimed", WORKER.agent_id: "claimed"}


def test_an_instant_claim_may_name_the_budget_and_nothing_else():
    assert take(INSTANT, credits=120).claim.status is ClaimStatus.ACCEPTED
    for credits in (1, 119, 121):
        assert code_of(lambda credits=credits: take(INSTANT, credits=credits)) == "INVALID_CREDITS"


def test_a_bid_on_a_task_in_bid_mode_must_name_its_price():
    assert code_of(lambda: take(OPEN)) == "VALIDATION_ERROR"
    placement = take(OPEN, credits=80)
    assert placement.claim.status is ClaimStatus.PENDING and placement.update(claim_id=71) is None
    assert [e.type for e in placement.events(71)] == [EventType.CLAIM_CREATED]


@pytest.mark.parametrize("status", [TaskStatus.CLAIMED, TaskStatus.IN_PROGRESS, TaskStatus.DELIVERED])
def test_everyone_after_the_first_claim_is_told_the_instant_task_was_taken(status):
    taken = replace(CLAIMED, claim_mode=ClaimMode.INSTANT, status=status)
    with pytest.raises(DomainError) as refused:
        take(taken, OTHER_WORKER)
    assert refused.value.code == "TASK_NOT_OPEN"
    assert "already taken" in refused.value.message and str(status) in refused.value.message


def test_the_bid_rules_still_apply_to_an_instant_task_in_their_order():
    assert code_of(lambda: take(INSTANT, POSTER)) == "SELF_CLAIM"
    assert code_of(lambda: take(replace(INSTANT, status=TaskStatus.EXPIRED))) == "TASK_NOT_OPEN"
    assert code_of(lambda: take(replace(INSTANT, status=TaskStatus.EXPIRED), credits=5)) == "TASK_NOT_OPEN"


def test_an_instant_tasks_claims_cannot_be_accepted_or_withdrawn():
    claim = ClaimFacts(
        id=70, task_id=CLAIMED.id, agent_id=WORKER.agent_id, status=ClaimStatus.ACCEPTED, proposed_credits=120
    )
    taken = LockedBid(task=replace(CLAIMED, claim_mode=ClaimMode.INSTANT), claim=claim)
    with pytest.raises(DomainError) as accepting:
        bids.accept_bid(taken, POSTER, 70)
    assert accepting.value.code == "INVALID_STATUS" and "instant" in accepting.value.message
    assert code_of(lambda: bids.withdraw_bid(taken, WORKER, 70)) == "INVALID_STATUS"
    # The checks before it stand: only the poster accepts, only the bidder withdraws.
    assert code_of(lambda: bids.accept_bid(taken, OTHER_WORKER, 70)) == "FORBIDDEN"
    assert code_of(lambda: bids.withdraw_bid(taken, OTHER_WORKER, 70)) == "FORBIDDEN"


# --- leases ---------------------------------------------------------------------------------------------------------


def test_an_assignment_starts_a_lease_of_assignment_hours_from_the_clock_of_the_read():
    leased = replace(INSTANT, assignment_hours=3)
    update = take(leased).update(claim_id=71)
    assert update is not None and update.assign is not None
    assert update.assign.lease_expires_at == NOW + timedelta(hours=3)
    pending = ClaimFacts(
        id=72, task_id=OPEN.id, agent_id=WORKER.agent_id, status=ClaimStatus.PENDING, proposed_credits=90
    )
    accepted = bids.accept_bid(LockedBid(task=replace(OPEN, assignment_hours=720), claim=pending), POSTER, 72)
    assert accepted.assignment.lease_expires_at == NOW + timedelta(hours=720)


def test_a_lease_cannot_start_without_the_databases_clock():
    with pytest.raises(ValueError, match="clock"):
        replace(OPEN, assignment_hours=1, read_at=None).new_lease()


def test_a_lease_ends_only_while_claimed_or_in_progress_and_once_its_time_has_come():
    end = CLAIMED.lease_expires_at
    assert end is not None
    assert not clock.due(CLAIMED, end - SECOND)
    assert clock.due(CLAIMED, end)  # the end itself is past
    assert clock.due(replace(CLAIMED, status=TaskStatus.IN_PROGRESS), end)
    assert not clock.due(replace(CLAIMED, lease_expires_at=None), end + SECOND)


def test_a_lease_end_is_a_rollback_that_tells_the_worker_and_the_poster():
    end = CLAIMED.lease_expires_at
    assert end is not None
    lapse = clock.lapse(locked(CLAIMED), (), end + SECOND)
    assert lapse is not None and lapse.refund is None  # the escrow stays held for the next worker
    assert lapse.task.status is TaskStatus.OPEN and lapse.task.unassign
    assert lapse.rejection.statuses == (ClaimStatus.ACCEPTED,) and lapse.rejection.reason == REJECTED_FOR_LEASE_END
    told = [e for e in lapse.events if e.type is EventType.CLAIM_LEASE_EXPIRED]
    assert sorted(e.agent_id for e in told) == [POSTER.agent_id, WORKER.agent_id]
    assert told[0].data == {
        "task_id": CLAIMED.id,
        "claim_id": 70,
        "agent_id": WORKER.agent_id,
        "assignment": 1,
        "previous_status": "claimed",
        "lease_expires_at": end.isoformat(),
    }
    statuses = {e.agent_id: e.data["status"] for e in lapse.events if e.type is EventType.TASK_STATUS}
    assert statuses == {None: "open", POSTER.agent_id: "open", WORKER.agent_id: "open"}


def test_a_delivery_in_time_wins_and_a_late_one_is_told_its_lease_ended():
    delivered = deliverables.deliver(DeliveryState(task=CLAIMED, deliveries_this_assignment=0), WORKER, "the work")
    assert delivered.update.status is TaskStatus.DELIVERED
    reopened = replace(CLAIMED, status=TaskStatus.OPEN, claimed_by_agent_id=None, price_credits=None)
    late = DeliveryState(task=reopened, deliveries_this_assignment=0, lease_ended_at=NOW)
    with pytest.raises(DomainError) as refused:
        deliverables.deliver(late, WORKER, "the work")
    assert refused.value.code == "INVALID_STATUS" and "lease" in refused.value.message
    # Anyone else delivering on the task is still not its worker.
    assert (
        code_of(lambda: deliverables.deliver(replace(late, lease_ended_at=None), WORKER, "x")) == "NOT_CLAIMED_BY_YOU"
    )


# --- expiry ---------------------------------------------------------------------------------------------------------


EXPIRING = replace(OPEN, expires_at=NOW, metadata={"batch": "2026-11"})


def test_an_open_task_expires_once_its_time_has_come_and_no_other_does():
    assert not clock.due(EXPIRING, NOW - SECOND)
    assert clock.due(EXPIRING, NOW)
    for status in TaskStatus:
        if status is not TaskStatus.OPEN:
            assert clock.lapse(locked(replace(EXPIRING, status=status)), (), NOW + SECOND) is None
    assert clock.lapse(locked(replace(EXPIRING, expires_at=None)), (), NOW + SECOND) is None


def test_expiry_refunds_the_whole_escrow_and_rejects_every_pending_bid():
    lapse = clock.lapse(locked(EXPIRING), (20, 21, 20), NOW + SECOND)
    assert lapse is not None and lapse.refund is not None
    assert lapse.refund.kind is TransferKind.REFUND and lapse.refund.task_id == EXPIRING.id
    assert lapse.refund.postings == (Posting(500, -120), Posting(501, 120))
    assert lapse.task.status is TaskStatus.EXPIRED
    assert lapse.rejection.statuses == (ClaimStatus.PENDING,) and lapse.rejection.reason == REJECTED_FOR_EXPIRY


def test_expiry_tells_the_poster_and_each_bidder_once_and_echoes_metadata_to_the_poster_only():
    lapse = clock.lapse(locked(EXPIRING), (20, 21, 20), NOW + SECOND)
    assert lapse is not None
    expired = {e.agent_id: e.data for e in lapse.events if e.type is EventType.TASK_EXPIRED}
    assert sorted(expired) == [POSTER.agent_id, 20, 21]
    assert len([e for e in lapse.events if e.type is EventType.TASK_EXPIRED]) == 3
    assert expired[POSTER.agent_id]["metadata"] == {"batch": "2026-11"}
    assert "metadata" not in expired[20] and expired[20]["refunded_credits"] == 120
    assert expired[20]["expires_at"] == NOW.isoformat()
    statuses = {e.agent_id: e.data["status"] for e in lapse.events if e.type is EventType.TASK_STATUS}
    assert statuses == {None: "expired", POSTER.agent_id: "expired"}


def test_the_transitions_refuse_a_task_that_is_not_due():
    with pytest.raises(ValueError):
        clock.expire(locked(EXPIRING), (), NOW - SECOND)
    with pytest.raises(ValueError):
        clock.end_lease(CLAIMED, NOW)


@given(
    status=st.sampled_from(TaskStatus),
    expires=st.one_of(st.none(), st.integers(-5, 5)),
    lease=st.one_of(st.none(), st.integers(-5, 5)),
)
def test_what_is_due_is_exactly_what_lapses(status, expires, lease):
    task = replace(
        CLAIMED,
        status=status,
        expires_at=None if expires is None else NOW + expires * SECOND,
        lease_expires_at=None if lease is None else NOW + lease * SECOND,
    )
    lapse = clock.lapse(locked(task), (), NOW)
    assert (lapse is not None) == clock.due(task, NOW)
    if lapse is not None:
        assert lapse.task.status in (TaskStatus.EXPIRED, TaskStatus.OPEN)
        assert (lapse.refund is not None) == (lapse.task.status is TaskStatus.EXPIRED)


def test_an_expired_task_cannot_be_claimed_cancelled_or_rolled_back():
    expired = replace(EXPIRING, status=TaskStatus.EXPIRED)
    with pytest.raises(DomainError) as claiming:
        take(expired, credits=50)
    assert claiming.value.code == "TASK_NOT_OPEN" and "expired" in claiming.value.message
    assert code_of(lambda: transitions.cancel(locked(expired), POSTER)) == "INVALID_STATUS"
    assert code_of(lambda: transitions.rollback(expired, POSTER)) == "INVALID_STATUS"


# --- directed tasks -------------------------------------------------------------------------------------------------


DIRECTED = replace(INSTANT, eligible_agent_ids=(WORKER.agent_id,))


def test_a_directed_task_is_not_found_by_anyone_it_is_not_directed_at():
    assert take(DIRECTED).claim.status is ClaimStatus.ACCEPTED
    claim = ClaimFacts(
        id=70, task_id=DIRECTED.id, agent_id=WORKER.agent_id, status=ClaimStatus.PENDING, proposed_credits=5
    )
    refused = {
        "bid": lambda: take(DIRECTED, STRANGER),
        "withdraw": lambda: bids.withdraw_bid(LockedBid(task=DIRECTED, claim=claim), STRANGER, 70),
        "accept": lambda: bids.accept_bid(LockedBid(task=DIRECTED, claim=claim), STRANGER, 70),
        "deliver": lambda: deliverables.deliver(
            DeliveryState(task=DIRECTED, deliveries_this_assignment=0), STRANGER, "x"
        ),
        "cancel": lambda: transitions.cancel(locked(DIRECTED), STRANGER),
        "rollback": lambda: transitions.rollback(DIRECTED, STRANGER),
    }
    assert {action: code_of(decide) for action, decide in refused.items()} == dict.fromkeys(refused, "TASK_NOT_FOUND")
    # The poster's operator sees its task: it is refused as before, for what it is.
    assert code_of(lambda: take(DIRECTED, POSTER)) == "SELF_CLAIM"
    # An eligible agent that is not the poster is refused as the poster's stranger it is, not as a stranger.
    assert code_of(lambda: transitions.cancel(locked(DIRECTED), WORKER)) == "FORBIDDEN"
