"""What each use case decides (domain.transitions, domain.bids, domain.deliverables), with no database: who is paid
what, which columns change, which bids are rejected, and which error comes first when several rules are broken."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import bids, deliverables, transitions
from domain.bids import BidderState, ClaimFacts, LockedBid
from domain.deliverables import DeliveryState
from domain.errors import DomainError
from domain.events import REJECTED_FOR_ANOTHER_BID, REJECTED_FOR_CANCEL, REJECTED_FOR_ROLLBACK, EventType
from domain.ledger import Posting, TransferKind
from domain.tasks import Actor, ClaimStatus, DeliverableStatus, NewTask, TaskState, TaskStatus
from domain.transitions import DeliverableFacts, LockedTask, OpenedTask, TaskAccounts

POSTER = Actor(agent_id=10, operator_id=1)
POSTER_TEAMMATE = Actor(agent_id=11, operator_id=1)  # another agent of the poster's operator
WORKER = Actor(agent_id=20, operator_id=2)
STRANGER = Actor(agent_id=30, operator_id=3)
ACCOUNTS = TaskAccounts(escrow=500, poster_wallet=501, worker_wallet=502, revenue=503)

# A task whose worker columns agree with its status, as the table's CHECKs keep them.
_ASSIGNED = {TaskStatus.CLAIMED, TaskStatus.IN_PROGRESS, TaskStatus.DELIVERED, TaskStatus.COMPLETED}


@st.composite
def task_states(draw: st.DrawFn, status: TaskStatus | None = None) -> TaskState:
    status = draw(st.sampled_from(TaskStatus)) if status is None else status
    budget = draw(st.integers(10, 10**9))
    assigned = status in _ASSIGNED
    return TaskState(
        id=draw(st.integers(1, 10**6)),
        poster_operator_id=POSTER.operator_id,
        poster_agent_id=POSTER.agent_id,
        status=status,
        budget_credits=budget,
        claimed_by_agent_id=WORKER.agent_id if assigned else None,
        price_credits=draw(st.integers(1, budget)) if assigned else None,
        max_revisions=draw(st.integers(0, 5)),
        assignment=draw(st.integers(1 if assigned else 0, 6)),
        title="Parse PDFs",
    )


def locked(task: TaskState, deliverable: DeliverableFacts | None = None) -> LockedTask:
    accounts = ACCOUNTS if task.claimed_by_agent_id is not None else replace(ACCOUNTS, worker_wallet=None)
    return LockedTask(task=task, accounts=accounts, deliverable=deliverable)


actors = st.sampled_from([POSTER, POSTER_TEAMMATE, WORKER, STRANGER])
# The error-order tests draw every combination of state and actor; each deeper branch is a small share of them.
ORDER = settings(max_examples=400)


def error_code(decide: Callable[[], object]) -> str | None:
    """The code of the DomainError `decide` raises, or None when it decides."""
    try:
        decide()
    except DomainError as error:
        return error.code
    return None


# --- accept a deliverable: the settlement ------------------------------------------------------------------------


@given(task=task_states(TaskStatus.DELIVERED), revision=st.integers(1, 6))
def test_accepting_work_empties_the_escrow_exactly_once_into_worker_fee_and_change(task, revision):
    deliverable = DeliverableFacts(id=9, task_id=task.id, status=DeliverableStatus.SUBMITTED, revision_number=revision)
    decided = deliverables.accept_work(locked(task, deliverable), POSTER_TEAMMATE, 9)
    budget, price = task.budget_credits, task.price_credits
    fee = price * 10 // 100

    transfer = decided.transfer
    assert transfer.kind is TransferKind.SETTLEMENT
    assert sum(p.amount for p in transfer.postings) == 0
    amounts = {p.account_id: p.amount for p in transfer.postings}
    assert amounts.pop(ACCOUNTS.escrow) == -budget  # the escrow held the budget: it ends at zero
    expected = {ACCOUNTS.worker_wallet: price - fee, ACCOUNTS.revenue: fee, ACCOUNTS.poster_wallet: budget - price}
    assert amounts == {account: amount for account, amount in expected.items() if amount}
    assert (decided.settlement.worker, decided.settlement.fee, decided.settlement.refund) == (
        price - fee,
        fee,
        budget - price,
    )
    assert decided.settlement.total == budget
    assert decided.settlement.worker >= 1  # the fee never takes the whole price
    assert (transfer.task_id, transfer.agent_id) == (task.id, WORKER.agent_id)

    assert decided.task == transitions.TaskUpdate(task_id=task.id, status=TaskStatus.COMPLETED)
    assert decided.deliverable.status is DeliverableStatus.ACCEPTED and decided.deliverable.deliverable_id == 9
    assert decided.worker_agent_id == WORKER.agent_id
    (accepted,) = [e for e in decided.events if e.type is EventType.DELIVERABLE_ACCEPTED]
    assert accepted.agent_id == WORKER.agent_id
    assert accepted.data["credits_paid"] == price - fee and accepted.data["platform_fee"] == fee


@pytest.mark.parametrize(("price", "fee"), [(1, 0), (9, 0), (10, 1), (19, 1), (150, 15), (599, 59)])
def test_the_fee_is_the_floor_of_ten_percent(price, fee):
    task = TaskState(
        id=3,
        poster_operator_id=1,
        status=TaskStatus.DELIVERED,
        budget_credits=600,
        claimed_by_agent_id=WORKER.agent_id,
        price_credits=price,
        max_revisions=2,
        assignment=1,
    )
    deliverable = DeliverableFacts(id=4, task_id=3, status=DeliverableStatus.SUBMITTED, revision_number=1)
    decided = deliverables.accept_work(locked(task, deliverable), POSTER, 4)
    revenue = [p.amount for p in decided.transfer.postings if p.account_id == ACCOUNTS.revenue]
    assert revenue == ([fee] if fee else [])  # a zero fee is no posting at all
    assert decided.settlement.fee == fee


# --- revision ------------------------------------------------------------------------------------------------------


@given(task=task_states(TaskStatus.DELIVERED), revision=st.integers(1, 7), notes=st.text(max_size=20))
def test_a_revision_sends_the_work_back_while_rounds_are_left(task, revision, notes):
    deliverable = DeliverableFacts(id=9, task_id=task.id, status=DeliverableStatus.SUBMITTED, revision_number=revision)
    decide = lambda: deliverables.request_revision(locked(task, deliverable), POSTER, 9, notes)  # noqa: E731
    if revision >= task.max_revisions + 1:
        assert error_code(decide) == "MAX_REVISIONS"
        return
    decided = decide()
    assert decided.task == transitions.TaskUpdate(task_id=task.id, status=TaskStatus.IN_PROGRESS)
    assert decided.deliverable == deliverables.DeliverableUpdate(
        deliverable_id=9, status=DeliverableStatus.REVISION_REQUESTED, revision_notes=notes
    )
    assert decided.worker_agent_id == WORKER.agent_id
    assert [e.agent_id for e in decided.events if e.type is EventType.DELIVERABLE_REVISION_REQUESTED] == [20]


def _review_expected(task: TaskState, actor: Actor, deliverable: DeliverableFacts | None) -> str | None:
    """TaskHive's order for accept and revision: FORBIDDEN, INVALID_STATUS, DELIVERABLE_NOT_FOUND, INVALID_STATUS."""
    if actor.operator_id != task.poster_operator_id:
        return "FORBIDDEN"
    if task.status is not TaskStatus.DELIVERED:
        return "INVALID_STATUS"
    if deliverable is None or deliverable.task_id != task.id:
        return "DELIVERABLE_NOT_FOUND"
    if deliverable.status is not DeliverableStatus.SUBMITTED:
        return "INVALID_STATUS"
    return None


@ORDER
@given(
    task=task_states(),
    actor=actors,
    found=st.sampled_from(["missing", "other task", "this task"]),
    status=st.sampled_from(DeliverableStatus),
)
def test_review_errors_come_in_taskhive_order(task, actor, found, status):
    deliverable = None
    if found != "missing":
        deliverable = DeliverableFacts(
            id=9, task_id=task.id + (found == "other task"), status=status, revision_number=1
        )
    expected = _review_expected(task, actor, deliverable)
    assert error_code(lambda: deliverables.accept_work(locked(task, deliverable), actor, 9)) == expected
    revision = error_code(lambda: deliverables.request_revision(locked(task, deliverable), actor, 9, "more"))
    assert revision == (expected or ("MAX_REVISIONS" if task.max_revisions == 0 else None))


# --- deliver -------------------------------------------------------------------------------------------------------


@ORDER
@given(task=task_states(), actor=actors, so_far=st.integers(0, 8))
def test_delivering_checks_in_order(task, actor, so_far):
    if task.claimed_by_agent_id != actor.agent_id:
        expected: str | None = "NOT_CLAIMED_BY_YOU"
    elif task.status not in (TaskStatus.CLAIMED, TaskStatus.IN_PROGRESS):
        expected = "INVALID_STATUS"
    elif so_far + 1 > task.max_revisions + 1:
        expected = "MAX_REVISIONS"
    else:
        expected = None
    state = DeliveryState(task=task, deliveries_this_assignment=so_far)
    assert error_code(lambda: deliverables.deliver(state, actor, "x")) == expected


@given(task=task_states(TaskStatus.CLAIMED) | task_states(TaskStatus.IN_PROGRESS), data=st.data())
def test_delivering_numbers_the_revision_within_the_assignment(task, data):
    so_far = data.draw(st.integers(0, task.max_revisions + 2))
    state = DeliveryState(task=task, deliveries_this_assignment=so_far)
    if so_far > task.max_revisions:  # max_revisions revisions: max_revisions + 1 deliveries in all
        assert error_code(lambda: deliverables.deliver(state, WORKER, "x")) == "MAX_REVISIONS"
        return
    decided = deliverables.deliver(state, WORKER, "x")
    assert decided.deliverable == deliverables.NewDeliverable(
        task_id=task.id, agent_id=WORKER.agent_id, assignment=task.assignment, content="x", revision_number=so_far + 1
    )
    assert decided.update == transitions.TaskUpdate(task_id=task.id, status=TaskStatus.DELIVERED)
    submitted = [e for e in decided.events(77) if e.type is EventType.DELIVERABLE_SUBMITTED]
    assert [(e.agent_id, e.data["deliverable_id"], e.data["revision_number"]) for e in submitted] == [
        (POSTER.agent_id, 77, so_far + 1)
    ]


# --- cancel and rollback -------------------------------------------------------------------------------------------


@given(task=task_states(), actor=actors)
def test_cancel_refunds_the_whole_budget_to_the_poster_wallet(task, actor):
    decide = lambda: transitions.cancel(locked(task), actor)  # noqa: E731
    if actor.operator_id != task.poster_operator_id:
        assert error_code(decide) == "FORBIDDEN"  # before the status, whatever it is
        return
    if task.status not in (TaskStatus.OPEN, TaskStatus.CLAIMED):
        assert error_code(decide) == "INVALID_STATUS"
        return
    decided = decide()
    assert decided.refund.kind is TransferKind.REFUND
    assert decided.refund.postings == (
        Posting(ACCOUNTS.escrow, -task.budget_credits),
        Posting(ACCOUNTS.poster_wallet, task.budget_credits),
    )
    assert (decided.refund.task_id, decided.refund.operator_id) == (task.id, task.poster_operator_id)
    assert decided.task == transitions.TaskUpdate(task_id=task.id, status=TaskStatus.CANCELLED, unassign=True)
    assert decided.rejection == transitions.BidRejection(
        statuses=(ClaimStatus.PENDING, ClaimStatus.ACCEPTED), reason=REJECTED_FOR_CANCEL
    )
    cancelled = [e for e in decided.events if e.type is EventType.TASK_CANCELLED]
    assert [e.agent_id for e in cancelled] == [
        POSTER.agent_id,
        *([WORKER.agent_id] if task.claimed_by_agent_id else []),
    ]


@given(task=task_states(), actor=actors)
def test_rollback_reopens_without_worker_or_price_and_moves_no_credits(task, actor):
    decide = lambda: transitions.rollback(task, actor)  # noqa: E731
    if actor.operator_id != task.poster_operator_id:
        assert error_code(decide) == "FORBIDDEN"
        return
    if task.status not in (TaskStatus.CLAIMED, TaskStatus.IN_PROGRESS):
        assert error_code(decide) == "INVALID_STATUS"
        return
    decided = decide()
    assert decided.task == transitions.TaskUpdate(task_id=task.id, status=TaskStatus.OPEN, unassign=True)
    assert decided.task.assign is None
    assert decided.rejection == transitions.BidRejection(statuses=(ClaimStatus.ACCEPTED,), reason=REJECTED_FOR_ROLLBACK)
    assert {f.name for f in fields(decided)} == {"rejection", "task", "events"}  # no transfer: the escrow stays
    rolled_back = [e for e in decided.events if e.type is EventType.TASK_ROLLED_BACK]
    assert {e.data["previous_agent_id"] for e in rolled_back} == {WORKER.agent_id}


def test_a_task_update_cannot_both_assign_and_unassign():
    assignment = transitions.Assignment(agent_id=20, claim_id=1, price_credits=5, number=1)
    with pytest.raises(ValueError):
        transitions.TaskUpdate(task_id=1, status=TaskStatus.CLAIMED, assign=assignment, unassign=True)


# --- bids ------------------------------------------------------------------------------------------------------------

claims = st.builds(
    ClaimFacts,
    id=st.just(5),
    task_id=st.integers(1, 10**6),
    agent_id=st.sampled_from([WORKER.agent_id, STRANGER.agent_id]),
    status=st.sampled_from(ClaimStatus),
    proposed_credits=st.integers(1, 10**9),
)


@ORDER
@given(task=task_states(), actor=actors, claim=st.none() | claims, same_task=st.booleans())
def test_accepting_a_bid_checks_in_taskhive_order(task, actor, claim, same_task):
    if claim is not None and same_task:
        claim = replace(claim, task_id=task.id)
    if actor.operator_id != task.poster_operator_id:
        expected: str | None = "FORBIDDEN"
    elif task.status is not TaskStatus.OPEN:
        expected = "TASK_NOT_OPEN"
    elif claim is None or claim.task_id != task.id:
        expected = "CLAIM_NOT_FOUND"
    elif claim.status is not ClaimStatus.PENDING:
        expected = "INVALID_STATUS"
    else:
        expected = None
    assert error_code(lambda: bids.accept_bid(LockedBid(task=task, claim=claim), actor, 5)) == expected


@given(
    task=task_states(TaskStatus.OPEN), actor=st.sampled_from([POSTER, POSTER_TEAMMATE]), claim=claims, data=st.data()
)
def test_accepting_a_bid_assigns_its_agent_at_its_price_in_a_new_assignment(task, actor, claim, data):
    price = data.draw(st.integers(1, task.budget_credits))
    claim = replace(claim, task_id=task.id, status=ClaimStatus.PENDING, proposed_credits=price)
    decided = bids.accept_bid(LockedBid(task=task, claim=claim), actor, 5)
    assignment = transitions.Assignment(
        agent_id=claim.agent_id, claim_id=5, price_credits=price, number=task.assignment + 1
    )
    assert decided.task == transitions.TaskUpdate(task_id=task.id, status=TaskStatus.CLAIMED, assign=assignment)
    assert decided.assignment == assignment
    assert decided.others_rejected_because == REJECTED_FOR_ANOTHER_BID
    (accepted,) = [e for e in decided.events if e.type is EventType.CLAIM_ACCEPTED]
    assert (accepted.agent_id, accepted.data["price_credits"]) == (claim.agent_id, price)


@ORDER
@given(task=task_states(), actor=actors, credits=st.integers(-5, 2 * 10**9), pending=st.booleans())
def test_placing_a_bid_checks_in_taskhive_order(task, actor, credits, pending):
    state = BidderState(task=task, has_pending_bid=pending)
    if actor.operator_id == task.poster_operator_id:
        expected: str | None = "SELF_CLAIM"
    elif task.status is not TaskStatus.OPEN:
        expected = "TASK_NOT_OPEN"
    elif not 1 <= credits <= task.budget_credits:
        expected = "INVALID_CREDITS"
    elif pending:
        expected = "DUPLICATE_CLAIM"
    else:
        expected = None
    assert error_code(lambda: bids.place_bid(state, actor, proposed_credits=credits, message="hi")) == expected


@given(task=task_states(TaskStatus.OPEN), actor=st.sampled_from([WORKER, STRANGER]), data=st.data())
def test_placing_a_bid_inserts_it_and_tells_the_poster(task, actor, data):
    credits = data.draw(st.integers(1, task.budget_credits))
    decided = bids.place_bid(
        BidderState(task=task, has_pending_bid=False), actor, proposed_credits=credits, message="hi"
    )
    assert decided.claim == bids.NewClaim(
        task_id=task.id, agent_id=actor.agent_id, operator_id=actor.operator_id, proposed_credits=credits, message="hi"
    )
    (created,) = decided.events(42)
    assert (created.type, created.agent_id, created.data["claim_id"]) == (EventType.CLAIM_CREATED, 10, 42)
    assert created.data["proposed_credits"] == credits


@ORDER
@given(task=task_states(), actor=actors, claim=st.none() | claims, same_task=st.booleans())
def test_withdrawing_checks_the_bid_not_the_task(task, actor, claim, same_task):
    if claim is not None and same_task:
        claim = replace(claim, task_id=task.id)
    if claim is None or claim.task_id != task.id:
        expected: str | None = "CLAIM_NOT_FOUND"
    elif claim.agent_id != actor.agent_id:
        expected = "FORBIDDEN"
    elif claim.status is not ClaimStatus.PENDING:
        expected = "INVALID_STATUS"
    else:
        expected = None
    assert error_code(lambda: bids.withdraw_bid(LockedBid(task=task, claim=claim), actor, 5)) == expected


@given(task=task_states(), actor=st.sampled_from([WORKER, STRANGER]), claim=claims)
def test_withdrawing_a_pending_bid_marks_it_withdrawn_whatever_the_task_status(task, actor, claim):
    claim = replace(claim, task_id=task.id, agent_id=actor.agent_id, status=ClaimStatus.PENDING)
    decided = bids.withdraw_bid(LockedBid(task=task, claim=claim), actor, 5)
    assert (decided.claim_id, decided.status) == (5, ClaimStatus.WITHDRAWN)
    (withdrawn,) = decided.events
    assert (withdrawn.type, withdrawn.agent_id, withdrawn.data["agent_id"]) == (
        EventType.CLAIM_WITHDRAWN,
        POSTER.agent_id,
        actor.agent_id,
    )


def test_a_forbidden_actor_on_a_task_that_is_not_open_is_told_forbidden_first():
    task = TaskState(
        id=1,
        poster_operator_id=1,
        status=TaskStatus.COMPLETED,
        budget_credits=100,
        claimed_by_agent_id=20,
        price_credits=50,
        max_revisions=2,
        assignment=1,
    )
    assert error_code(lambda: bids.accept_bid(LockedBid(task=task, claim=None), STRANGER, 5)) == "FORBIDDEN"
    assert error_code(lambda: transitions.cancel(locked(task), STRANGER)) == "FORBIDDEN"
    assert error_code(lambda: transitions.rollback(task, STRANGER)) == "FORBIDDEN"
    assert error_code(lambda: deliverables.accept_work(locked(task), STRANGER, 5)) == "FORBIDDEN"
    assert error_code(lambda: deliverables.request_revision(locked(task), STRANGER, 5, "n")) == "FORBIDDEN"


# --- post ------------------------------------------------------------------------------------------------------------


@given(budget=st.integers(10, 10**9), task_id=st.integers(1, 10**6))
def test_posting_holds_the_whole_budget_in_the_new_escrow(budget, task_id):
    now = datetime(2026, 12, 1, tzinfo=UTC)
    request = NewTask(title="Parse PDFs", description="d", budget_credits=budget, deadline=now + timedelta(days=1))
    posted = transitions.post_task(request, POSTER, now=now).opened(
        OpenedTask(task_id=task_id, escrow_account_id=700, wallet_account_id=600)
    )
    assert posted.hold.kind is TransferKind.ESCROW_HOLD
    assert posted.hold.postings == (Posting(600, -budget), Posting(700, budget))
    assert (posted.hold.task_id, posted.hold.operator_id, posted.hold.agent_id) == (task_id, 1, 10)
    assert posted.match.task_id == task_id
    assert error_code(lambda: transitions.post_task(replace(request, deadline=now), POSTER, now=now)) == (
        "INVALID_DEADLINE"
    )
