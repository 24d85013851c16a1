"""Bids (TaskHive's claims): placing, withdrawing and accepting one, decided under the task's row lock.

See domain.transitions for the shape every use case shares.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain import events as announce
from domain.errors import Conflict, Forbidden, Unprocessable
from domain.events import REJECTED_FOR_ANOTHER_BID, Event
from domain.tasks import (
    Actor,
    ClaimStatus,
    TaskState,
    TaskStatus,
    claim_not_found,
    invalid_status,
    not_open,
    not_poster,
)
from domain.transitions import Assignment, TaskUpdate


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimFacts:
    """One bid, read with its task's lock."""

    id: int
    task_id: int
    agent_id: int
    status: ClaimStatus
    proposed_credits: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BidderState:
    """A task under its row lock, and whether the bidding agent already has a pending bid on it."""

    task: TaskState
    has_pending_bid: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class LockedBid:
    """A task under its row lock and the bid a request names (None: no such bid)."""

    task: TaskState
    claim: ClaimFacts | None


# --- place --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NewClaim:
    task_id: int
    agent_id: int
    operator_id: int
    proposed_credits: int
    message: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class BidPlacement:
    """The bid to insert; `events` names it once the insert has given it an id."""

    task: TaskState
    claim: NewClaim

    def events(self, claim_id: int) -> tuple[Event, ...]:
        claim = self.claim
        placed = announce.bid_placed(
            self.task, claim_id=claim_id, agent_id=claim.agent_id, proposed_credits=claim.proposed_credits
        )
        return tuple(placed)


def place_bid(state: BidderState, actor: Actor, *, proposed_credits: int, message: str | None) -> BidPlacement:
    """TaskHive's order: SELF_CLAIM, TASK_NOT_OPEN, INVALID_CREDITS, DUPLICATE_CLAIM."""
    task = state.task
    if task.poster_operator_id == actor.operator_id:
        raise Conflict(
            "You cannot bid on a task your own operator posted",
            "Bid on tasks posted by other operators.",
            code="SELF_CLAIM",
        )
    if task.status is not TaskStatus.OPEN:
        raise not_open(task)
    if not 1 <= proposed_credits <= task.budget_credits:
        raise Unprocessable(
            f"proposed_credits must be between 1 and the budget ({task.budget_credits})",
            f"Propose at most {task.budget_credits} credits.",
            code="INVALID_CREDITS",
        )
    if state.has_pending_bid:
        raise Conflict(
            f"You already have a pending bid on task {task.id}",
            "Withdraw it first, or wait for the poster's decision.",
            code="DUPLICATE_CLAIM",
        )
    claim = NewClaim(
        task_id=task.id,
        agent_id=actor.agent_id,
        operator_id=actor.operator_id,
        proposed_credits=proposed_credits,
        message=message,
    )
    return BidPlacement(task=task, claim=claim)


# --- withdraw -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BidWithdrawal:
    claim_id: int
    status: ClaimStatus  # the bid's new status
    events: tuple[Event, ...]


def withdraw_bid(state: LockedBid, actor: Actor, claim_id: int) -> BidWithdrawal:
    """Order: CLAIM_NOT_FOUND, FORBIDDEN, INVALID_STATUS."""
    task, claim = state.task, state.claim
    if claim is None or claim.task_id != task.id:
        raise claim_not_found(claim_id)
    if claim.agent_id != actor.agent_id:
        raise Forbidden("You can only withdraw your own bids", "Withdraw a bid your agent placed.")
    if claim.status is ClaimStatus.ACCEPTED:
        raise invalid_status(
            "Claim is already accepted; only a pending bid can be withdrawn",
            "The task is assigned to you: deliver the work, or ask the poster to roll the task back.",
        )
    if claim.status is not ClaimStatus.PENDING:
        raise invalid_status(
            f"Claim is already {claim.status}; only a pending bid can be withdrawn",
            "Nothing to withdraw; bid again while the task is open.",
        )
    return BidWithdrawal(
        claim_id=claim.id,
        status=ClaimStatus.WITHDRAWN,
        events=tuple(announce.bid_withdrawn(task, claim_id=claim.id, agent_id=claim.agent_id)),
    )


# --- accept -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BidAcceptance:
    task: TaskUpdate  # claimed, assigned to the bid's agent at its price
    assignment: Assignment
    others_rejected_because: str  # every other pending bid is rejected, and its agent told why
    events: tuple[Event, ...]


def accept_bid(state: LockedBid, actor: Actor, claim_id: int) -> BidAcceptance:
    """TaskHive's order: FORBIDDEN, TASK_NOT_OPEN, CLAIM_NOT_FOUND, INVALID_STATUS. The accepted bid is the price."""
    task, claim = state.task, state.claim
    if task.poster_operator_id != actor.operator_id:
        raise not_poster("accept bids")
    if task.status is not TaskStatus.OPEN:
        raise not_open(task, for_poster=True)
    if claim is None or claim.task_id != task.id:
        raise claim_not_found(claim_id)
    if claim.status is not ClaimStatus.PENDING:
        raise invalid_status(
            f"Claim is already {claim.status}",
            f"Accept one of the pending bids listed by GET /api/v1/tasks/{task.id}/claims.",
        )
    assignment = Assignment(
        agent_id=claim.agent_id, claim_id=claim.id, price_credits=claim.proposed_credits, number=task.assignment + 1
    )
    events = announce.bid_accepted(
        task, claim_id=claim.id, agent_id=claim.agent_id, price_credits=claim.proposed_credits
    )
    return BidAcceptance(
        task=TaskUpdate(task_id=task.id, status=TaskStatus.CLAIMED, assign=assignment),
        assignment=assignment,
        others_rejected_because=REJECTED_FOR_ANOTHER_BID,
        events=tuple(events),
    )
