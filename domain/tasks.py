"""Tasks, bids (claims) and deliverables: the marketplace's state machines, checks in TaskHive's order, and the
settlement arithmetic. Pure: the services load state under a lock, ask these rules, then write what they say.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.errors import Conflict, Forbidden, NotFound, Unprocessable

MIN_BUDGET = 10
PLATFORM_FEE_PERCENT = 10
DEFAULT_MAX_REVISIONS = 2


class TaskStatus(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    IN_PROGRESS = "in_progress"
    DELIVERED = "delivered"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    DISPUTED = "disputed"


# Statuses whose budget is still held in the task's escrow account.
LIVE_STATUSES = (TaskStatus.OPEN, TaskStatus.CLAIMED, TaskStatus.IN_PROGRESS, TaskStatus.DELIVERED)
WORKING_STATUSES = (TaskStatus.CLAIMED, TaskStatus.IN_PROGRESS, TaskStatus.DELIVERED)


class ClaimStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class DeliverableStatus(StrEnum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    REVISION_REQUESTED = "revision_requested"


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskState:
    """What the rules need to know of a task, read under its row lock."""

    id: int
    poster_operator_id: int
    status: TaskStatus
    budget_credits: int
    claimed_by_agent_id: int | None
    price_credits: int | None
    max_revisions: int
    assignment: int
    poster_agent_id: int = 0
    title: str = ""
    deadline: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    agent_id: int
    operator_id: int


@dataclass(frozen=True, slots=True)
class Settlement:
    """How an accepted deliverable splits the escrow: all of it, exactly once."""

    worker: int
    fee: int
    refund: int

    @property
    def total(self) -> int:
        return self.worker + self.fee + self.refund


def settle(budget: int, price: int) -> Settlement:
    """Price minus the fee to the worker, floor(price x 10%) to the platform, budget - price back to the poster."""
    if not 1 <= price <= budget:
        raise ValueError(f"price {price} outside 1..{budget}")
    fee = price * PLATFORM_FEE_PERCENT // 100
    return Settlement(worker=price - fee, fee=fee, refund=budget - price)


def task_not_found(task_id: int) -> NotFound:
    return NotFound(
        f"Task {task_id} not found",
        "Check the task id; browse open tasks with GET /api/v1/tasks.",
        code="TASK_NOT_FOUND",
    )


def _not_poster(action: str) -> Forbidden:
    return Forbidden(f"Only the poster's agents can {action}", "Use an agent of the operator that posted the task.")


# What a bidder can do about a task that is no longer open.
_NEXT_STEP = {
    TaskStatus.CLAIMED: "It has been assigned; browse other open tasks.",
    TaskStatus.IN_PROGRESS: "It is being worked on; browse other open tasks.",
    TaskStatus.DELIVERED: "Work has been delivered; browse other open tasks.",
    TaskStatus.COMPLETED: "It is finished; browse other open tasks.",
    TaskStatus.CANCELLED: "It was cancelled; browse other open tasks.",
    TaskStatus.EXPIRED: "It expired; browse other open tasks.",
    TaskStatus.DISPUTED: "It is disputed; browse other open tasks.",
}
# What the poster can do instead of accepting a bid on it.
_POSTER_NEXT_STEP = {
    TaskStatus.CLAIMED: "A bid is already accepted; roll the task back (POST /api/v1/tasks/{id}/rollback) to pick "
    "another.",
    TaskStatus.IN_PROGRESS: "A bid is already accepted; roll the task back (POST /api/v1/tasks/{id}/rollback) to pick "
    "another.",
    TaskStatus.DELIVERED: "Work has been delivered: accept it or request a revision.",
    TaskStatus.COMPLETED: "It is completed and paid; post a new task for more work.",
    TaskStatus.CANCELLED: "It was cancelled and its escrow refunded; post a new task.",
    TaskStatus.EXPIRED: "It expired and its escrow was refunded; post a new task.",
    TaskStatus.DISPUTED: "It is disputed; no bid can be accepted.",
}
# A finished task: nothing anyone can do to it any more.
_FINISHED = {
    TaskStatus.COMPLETED: "It is completed and paid; nothing more can change.",
    TaskStatus.CANCELLED: "It was cancelled and its escrow refunded; nothing more can change.",
    TaskStatus.EXPIRED: "It expired and its escrow was refunded; nothing more can change.",
    TaskStatus.DISPUTED: "It is disputed; nothing can change until the dispute is resolved.",
}


def not_open(task: TaskState, *, for_poster: bool = False) -> Conflict:
    steps = _POSTER_NEXT_STEP if for_poster else _NEXT_STEP
    return Conflict(
        f"Task {task.id} is not open (current status: {task.status})",
        steps.get(task.status, "Browse open tasks with GET /api/v1/tasks.").replace("{id}", str(task.id)),
        code="TASK_NOT_OPEN",
    )


def invalid_status(message: str, suggestion: str) -> Conflict:
    return Conflict(message, suggestion, code="INVALID_STATUS")


def check_bid(task: TaskState, actor: Actor, proposed_credits: int, *, has_pending_bid: bool) -> None:
    """TaskHive's order: SELF_CLAIM, TASK_NOT_OPEN, INVALID_CREDITS, DUPLICATE_CLAIM."""
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
    if has_pending_bid:
        raise Conflict(
            f"You already have a pending bid on task {task.id}",
            "Withdraw it first, or wait for the poster's decision.",
            code="DUPLICATE_CLAIM",
        )


def check_accept_bid(
    task: TaskState, actor: Actor, claim_task_id: int | None, claim_status: ClaimStatus | None, claim_id: int
) -> None:
    """TaskHive's order: FORBIDDEN, TASK_NOT_OPEN, CLAIM_NOT_FOUND, INVALID_STATUS."""
    if task.poster_operator_id != actor.operator_id:
        raise _not_poster("accept bids")
    if task.status is not TaskStatus.OPEN:
        raise not_open(task, for_poster=True)
    if claim_status is None or claim_task_id != task.id:
        raise claim_not_found(claim_id)
    if claim_status is not ClaimStatus.PENDING:
        raise invalid_status(
            f"Claim is already {claim_status}",
            f"Accept one of the pending bids listed by GET /api/v1/tasks/{task.id}/claims.",
        )


def claim_not_found(claim_id: int) -> NotFound:
    return NotFound(
        f"Claim {claim_id} not found on this task",
        "List bids with GET /api/v1/tasks/{id}/claims.",
        code="CLAIM_NOT_FOUND",
    )


def check_withdraw(
    task: TaskState,
    actor: Actor,
    claim_agent_id: int | None,
    claim_task_id: int | None,
    claim_status: ClaimStatus | None,
    claim_id: int,
) -> None:
    if claim_status is None or claim_task_id != task.id:
        raise claim_not_found(claim_id)
    if claim_agent_id != actor.agent_id:
        raise Forbidden("You can only withdraw your own bids", "Withdraw a bid your agent placed.")
    if claim_status is ClaimStatus.ACCEPTED:
        raise invalid_status(
            "Claim is already accepted; only a pending bid can be withdrawn",
            "The task is assigned to you: deliver the work, or ask the poster to roll the task back.",
        )
    if claim_status is not ClaimStatus.PENDING:
        raise invalid_status(
            f"Claim is already {claim_status}; only a pending bid can be withdrawn",
            "Nothing to withdraw; bid again while the task is open.",
        )


def check_deliver(task: TaskState, actor: Actor, deliveries_this_assignment: int) -> int:
    """Return the new deliverable's revision number. Order: NOT_CLAIMED_BY_YOU, INVALID_STATUS, MAX_REVISIONS."""
    if task.claimed_by_agent_id != actor.agent_id:
        raise Forbidden(
            "This task is not claimed by you", "Deliver only tasks assigned to your agent.", code="NOT_CLAIMED_BY_YOU"
        )
    if task.status not in (TaskStatus.CLAIMED, TaskStatus.IN_PROGRESS):
        raise invalid_status(
            f"Task {task.id} is {task.status}; deliverables are accepted while claimed or in_progress",
            _FINISHED.get(
                task.status, "Wait for the poster to accept your delivery or ask for a revision; then deliver again."
            ),
        )
    revision_number = deliveries_this_assignment + 1
    if revision_number > task.max_revisions + 1:
        raise Conflict(
            f"Maximum revisions reached ({deliveries_this_assignment} of {task.max_revisions + 1} deliveries)",
            "No more deliveries are allowed in this assignment; the poster can still accept the last one.",
            code="MAX_REVISIONS",
        )
    return revision_number


def check_review(
    task: TaskState,
    actor: Actor,
    deliverable_task_id: int | None,
    deliverable_status: DeliverableStatus | None,
    deliverable_id: int,
) -> None:
    """Accept or revision: FORBIDDEN, INVALID_STATUS (task), DELIVERABLE_NOT_FOUND, INVALID_STATUS (deliverable)."""
    if task.poster_operator_id != actor.operator_id:
        raise _not_poster("review deliverables")
    if task.status is not TaskStatus.DELIVERED:
        raise invalid_status(
            f"Task {task.id} is {task.status}, not delivered",
            _FINISHED.get(task.status, "Wait for the worker to deliver; deliveries are reviewed while delivered."),
        )
    if deliverable_status is None or deliverable_task_id != task.id:
        raise NotFound(
            f"Deliverable {deliverable_id} not found on this task",
            "List deliverables with GET /api/v1/tasks/{id}/deliverables.",
            code="DELIVERABLE_NOT_FOUND",
        )
    if deliverable_status is not DeliverableStatus.SUBMITTED:
        raise invalid_status(f"Deliverable is already {deliverable_status}", "Review the latest submitted delivery.")


def check_revision_round(task: TaskState, revision_number: int) -> None:
    if revision_number >= task.max_revisions + 1:
        raise Conflict(
            f"Maximum revisions reached ({revision_number} of {task.max_revisions + 1} deliveries)",
            "Accept this deliverable: no revision rounds are left.",
            code="MAX_REVISIONS",
        )


def check_cancel(task: TaskState, actor: Actor) -> None:
    if task.poster_operator_id != actor.operator_id:
        raise _not_poster("cancel this task")
    if task.status not in (TaskStatus.OPEN, TaskStatus.CLAIMED):
        raise invalid_status(
            f"Task {task.id} is {task.status}; only open or claimed tasks can be cancelled",
            _FINISHED.get(task.status)
            or (
                "Accept the delivery or request a revision; a task in progress can be rolled back to open, then "
                f"cancelled (POST /api/v1/tasks/{task.id}/rollback)."
                if task.status is TaskStatus.DELIVERED
                else f"Roll it back to open first (POST /api/v1/tasks/{task.id}/rollback), then cancel it."
            ),
        )


def check_rollback(task: TaskState, actor: Actor) -> None:
    if task.poster_operator_id != actor.operator_id:
        raise _not_poster("roll this task back")
    if task.status not in (TaskStatus.CLAIMED, TaskStatus.IN_PROGRESS):
        raise invalid_status(
            f"Task {task.id} is {task.status}; only claimed or in_progress tasks can be rolled back",
            _FINISHED.get(task.status)
            or (
                "It is already open: cancel it (POST /api/v1/tasks/{id}/cancel) to get the escrow back."
                if task.status is TaskStatus.OPEN
                else "Accept the delivery, or request a revision and then roll the task back."
            ).replace("{id}", str(task.id)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class NewTask:
    title: str
    description: str
    budget_credits: int
    category_id: int | None = None
    requirements: str | None = None
    deadline: datetime | None = None
    max_revisions: int = DEFAULT_MAX_REVISIONS


def check_new_task(task: NewTask, now: datetime) -> None:
    if task.deadline is not None and task.deadline <= now:
        raise Unprocessable(
            "deadline must be in the future", "Send an ISO 8601 deadline later than now.", code="INVALID_DEADLINE"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Category:
    id: int
    name: str
    slug: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRecord:
    """A task as readers see it."""

    id: int
    title: str
    description: str
    requirements: str | None
    budget_credits: int
    category: Category | None
    status: TaskStatus
    poster_operator_id: int
    poster_name: str
    claimed_by_agent_id: int | None
    price_credits: int | None
    claims_count: int
    deliverables_count: int
    deadline: datetime | None
    max_revisions: int
    auto_review_enabled: bool
    created_at: datetime
    relevance: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimRecord:
    id: int
    task_id: int
    agent_id: int
    agent_name: str
    proposed_credits: int
    message: str | None
    status: ClaimStatus
    created_at: datetime
    task_title: str = ""
    task_status: TaskStatus | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverableRecord:
    id: int
    task_id: int
    agent_id: int
    content: str
    status: DeliverableStatus
    revision_notes: str | None
    revision_number: int
    submitted_at: datetime


class Sort(StrEnum):
    NEWEST = "newest"
    OLDEST = "oldest"
    BUDGET_HIGH = "budget_high"
    BUDGET_LOW = "budget_low"


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFilter:
    status: TaskStatus = TaskStatus.OPEN
    category_id: int | None = None
    min_budget: int | None = None
    max_budget: int | None = None
