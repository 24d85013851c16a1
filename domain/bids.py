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
    ClaimMode,
    ClaimStatus,
    TaskState,
    TaskStatus,
    claim_not_found,
    invalid_status,
    not_open,
    not_poster,
    require_visible,
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
    status: ClaimStatus = ClaimStatus.PENDING  # accepted as it is made: an instant task's claim


@dataclass(frozen=True, slots=True, kw_only=True)
class BidPlacement:
    """The bid to insert; `events` names it once the insert has given it an id. A claim on an instant task takes the
    task at once: `update` assigns it to the claiming agent at the full budget."""

    task: TaskState
    claim: NewClaim

    @property
    def takes_task(self) -> bool:
        return self.claim.status is ClaimStatus.ACCEPTED

    def assignment(self, claim_id: int) -> Assignment | None:
        if not self.takes_task:
            return None
        claim = self.claim
        return Assignment(
            agent_id=claim.agent_id,
            claim_id=claim_id,
            price_credits=claim.proposed_credits,
            number=self.task.assignment + 1,
            lease_expires_at=self.task.new_lease(),
        )

    def update(self, claim_id: int) -> TaskUpdate | None:
        """The task's change: claimed by the agent (an instant task), or none (a bid leaves the task open)."""
        assignment = self.assignment(claim_id)
        if assignment is None:
            return None
        return TaskUpdate(task_id=self.task.id, status=TaskStatus.CLAIMED, assign=assignment)

    def events(self, claim_id: int) -> tuple[Event, ...]:
        claim = self.claim
        if self.takes_task:
            taken = announce.bid_accepted(
                self.task, claim_id=claim_id, agent_id=claim.agent_id, price_credits=claim.proposed_credits
            )
            return tuple(taken)
        placed = announce.bid_placed(
            self.task, claim_id=claim_id, agent_id=claim.agent_id, proposed_credits=claim.proposed_credits
        )
        return tuple(placed)


def place_bid(state: BidderState, actor: Actor, *, proposed_credits: int | None, message: str | None) -> BidPlacement:
    """TaskHive's order: SELF_CLAIM, TASK_NOT_OPEN, INVALID_CREDITS, DUPLICATE_CLAIM; before them, a task the agent
    may not see is not found, and a bid on a task in bid mode must name its price (VALIDATION_ERROR, as the schema
    would). A claim on an instant task takes it at its full budget: `proposed_credits` may be left out, and if
    given must be the budget."""
    task = state.task
    require_visible(task, actor)
    instant = task.claim_mode is ClaimMode.INSTANT
    if proposed_credits is None and not instant:
        raise Unprocessable(
            "Object missing required field `proposed_credits`: this task takes bids (claim_mode bid)",
            f"Propose a price between 1 and the budget ({task.budget_credits}).",
            code="VALIDATION_ERROR",
        )
    if task.poster_operator_id == actor.operator_id:
        raise Conflict(
            "You cannot bid on a task your own operator posted",
            "Bid on tasks posted by other operators.",
            code="SELF_CLAIM",
        )
    if task.status is not TaskStatus.OPEN:
        raise not_open(task)
    price = task.budget_credits if proposed_credits is None else proposed_credits
    if instant and price != task.budget_credits:
        raise Unprocessable(
            f"proposed_credits must be the budget ({task.budget_credits}): an instant task is taken at its budget",
            f"Leave proposed_credits out, or send {task.budget_credits}.",
            code="INVALID_CREDITS",
        )
    if not 1 <= price <= task.budget_credits:
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
        proposed_credits=price,
        message=message,
        status=ClaimStatus.ACCEPTED if instant else ClaimStatus.PENDING,
    )
    return BidPlacement(task=task, claim=claim)


def _instant_claims_stand(task: TaskState, action: str) -> None:
    """An instant task's claims are accepted as they are made: there is no bid to accept or withdraw."""
    if task.claim_mode is ClaimMode.INSTANT:
        raise invalid_status(
            f"Task {task.id} is an instant task: its claims cannot be {action}",
            "Its first claim took it at its budget. The poster can roll the task back "
            f"(POST /api/v1/tasks/{task.id}/rollback) to open it to a new claim.",
        )


# --- withdraw -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BidWithdrawal:
    claim_id: int
    status: ClaimStatus  # the bid's new status
    events: tuple[Event, ...]


def withdraw_bid(state: LockedBid, actor: Actor, claim_id: int) -> BidWithdrawal:
    """Order: CLAIM_NOT_FOUND, FORBIDDEN, INVALID_STATUS (an instant task's claim, or a bid no longer pending)."""
    task, claim = state.task, state.claim
    require_visible(task, actor)
    if claim is None or claim.task_id != task.id:
        raise claim_not_found(claim_id)
    if claim.agent_id != actor.agent_id:
        raise Forbidden("You can only withdraw your own bids", "Withdraw a bid your agent placed.")
    _instant_claims_stand(task, "withdrawn")
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
    """TaskHive's order: FORBIDDEN, TASK_NOT_OPEN, CLAIM_NOT_FOUND, INVALID_STATUS (before TASK_NOT_OPEN for an
    instant task, which has no bid to accept). The accepted bid is the price; the task's lease starts."""
    task, claim = state.task, state.claim
    require_visible(task, actor)
    if task.poster_operator_id != actor.operator_id:
        raise not_poster("accept bids")
    _instant_claims_stand(task, "accepted")
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
        agent_id=claim.agent_id,
        claim_id=claim.id,
        price_credits=claim.proposed_credits,
        number=task.assignment + 1,
        lease_expires_at=task.new_lease(),
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
