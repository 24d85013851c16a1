"""What a use case does to a task, decided from the state its service read under the task's row lock.

Each use case is a function that takes that locked state, the actor and the request, checks in TaskHive's order
(raising the DomainError the contract names) and returns a frozen result saying everything there is to write: the
task's next status and the columns that change with it, what happens to bids and deliverables, the ledger transfer
and the events. The services read, call one, write what it says and commit, so who is paid what is decided here.
This module holds the shapes the use cases share and the task's own (post, cancel, rollback); domain.bids and
domain.deliverables hold the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain import events as announce
from domain.events import REJECTED_FOR_CANCEL, REJECTED_FOR_ROLLBACK, Event, MatchRequest
from domain.ledger import TransferKind, TransferRequest, move
from domain.tasks import (
    Actor,
    ClaimStatus,
    DeliverableStatus,
    NewTask,
    TaskState,
    TaskStatus,
    check_new_task,
    finished_step,
    invalid_status,
    not_poster,
    require_visible,
)

# --- read under the lock --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskAccounts:
    """The ledger accounts a task's settlement or refund touches."""

    escrow: int
    poster_wallet: int
    worker_wallet: int | None  # the claimed agent's operator's wallet; None while no one is assigned
    revenue: int  # the platform revenue account this task's fee is credited to


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverableFacts:
    """One deliverable, read with its task's lock."""

    id: int
    task_id: int
    status: DeliverableStatus
    revision_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LockedTask:
    """A task under its row lock, its accounts, and the deliverable a request names (None: none named, or no such)."""

    task: TaskState
    accounts: TaskAccounts
    deliverable: DeliverableFacts | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenedTask:
    """A task row just inserted with its escrow account, and the poster's wallet."""

    task_id: int
    escrow_account_id: int
    wallet_account_id: int


# --- written ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Assignment:
    """Who works on the task, from the accepted bid."""

    agent_id: int
    claim_id: int
    price_credits: int
    number: int  # the task's `assignment`: deliveries and their revision numbers count per assignment
    lease_expires_at: datetime | None = None  # when it must have delivered by (the task's assignment_hours)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskUpdate:
    """The task row's next status, and what happens to its worker columns with it (by default they stay)."""

    task_id: int
    status: TaskStatus
    assign: Assignment | None = None  # sets claimed_by_agent_id, accepted_claim_id, price_credits and assignment
    unassign: bool = False  # clears claimed_by_agent_id, accepted_claim_id and price_credits

    def __post_init__(self) -> None:
        if self.assign is not None and self.unassign:
            raise ValueError("a task update assigns a worker or unassigns one, not both")


@dataclass(frozen=True, slots=True, kw_only=True)
class BidRejection:
    """Every bid of the task in one of `statuses` is rejected, and its agent hears `claim.rejected` with `reason`."""

    statuses: tuple[ClaimStatus, ...]
    reason: str


# --- post -------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskPosted:
    hold: TransferRequest  # the whole budget, wallet to escrow (the database refuses an overdraft)
    events: tuple[Event, ...]
    match: MatchRequest | None  # None for a directed task: its eligible agents are told by name


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskPosting:
    """A valid new task, before its rows exist; `opened` says what follows once they do."""

    request: NewTask
    actor: Actor

    def opened(self, rows: OpenedTask) -> TaskPosted:
        request, actor = self.request, self.actor
        hold = move(
            TransferKind.ESCROW_HOLD,
            f"Escrow for task {rows.task_id}",
            source=rows.wallet_account_id,
            destination=rows.escrow_account_id,
            amount=request.budget_credits,
            task_id=rows.task_id,
            operator_id=actor.operator_id,
            agent_id=actor.agent_id,
        )
        events, match = announce.task_posted(
            task_id=rows.task_id,
            title=request.title,
            budget_credits=request.budget_credits,
            category_id=request.category_id,
            poster_agent_id=actor.agent_id,
            poster_operator_id=actor.operator_id,
            tags=request.tags,
            eligible_agent_ids=request.eligible_agent_ids,
            metadata=request.metadata,
        )
        return TaskPosted(hold=hold, events=tuple(events), match=match)


def post_task(request: NewTask, actor: Actor, *, now: datetime) -> TaskPosting:
    """Checked before anything is read (INVALID_DEADLINE comes before an unknown category)."""
    check_new_task(request, now)
    return TaskPosting(request=request, actor=actor)


# --- cancel and rollback --------------------------------------------------------------------------------------------


def escrow_refund(state: LockedTask, description: str) -> TransferRequest:
    """The whole escrow back to the poster's wallet (a cancel or an expiry: DESIGN §2)."""
    task, accounts = state.task, state.accounts
    return move(
        TransferKind.REFUND,
        description,
        source=accounts.escrow,
        destination=accounts.poster_wallet,
        amount=task.budget_credits,
        task_id=task.id,
        operator_id=task.poster_operator_id,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancellation:
    rejection: BidRejection
    task: TaskUpdate
    refund: TransferRequest  # the whole escrow back to the poster's wallet
    events: tuple[Event, ...]


def cancel(state: LockedTask, actor: Actor) -> Cancellation:
    """An open or claimed task: every pending or accepted bid is rejected, the whole escrow goes back to the poster."""
    task = state.task
    require_visible(task, actor)
    if task.poster_operator_id != actor.operator_id:
        raise not_poster("cancel this task")
    if task.status not in (TaskStatus.OPEN, TaskStatus.CLAIMED):
        raise invalid_status(
            f"Task {task.id} is {task.status}; only open or claimed tasks can be cancelled",
            finished_step(task.status)
            or (
                "Accept the delivery or request a revision; a task in progress can be rolled back to open, then "
                f"cancelled (POST /api/v1/tasks/{task.id}/rollback)."
                if task.status is TaskStatus.DELIVERED
                else f"Roll it back to open first (POST /api/v1/tasks/{task.id}/rollback), then cancel it."
            ),
        )
    refund = escrow_refund(state, f"Refund for cancelled task {task.id}")
    return Cancellation(
        rejection=BidRejection(statuses=(ClaimStatus.PENDING, ClaimStatus.ACCEPTED), reason=REJECTED_FOR_CANCEL),
        task=TaskUpdate(task_id=task.id, status=TaskStatus.CANCELLED, unassign=True),
        refund=refund,
        events=tuple(announce.task_cancelled(task)),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollback:
    """The task reopens with no worker and no price; its escrow stays held (no transfer)."""

    rejection: BidRejection
    task: TaskUpdate
    events: tuple[Event, ...]


def rollback(task: TaskState, actor: Actor) -> Rollback:
    """A claimed or in-progress task: the assigned bid is rejected and the task reopens."""
    require_visible(task, actor)
    if task.poster_operator_id != actor.operator_id:
        raise not_poster("roll this task back")
    if task.status not in (TaskStatus.CLAIMED, TaskStatus.IN_PROGRESS):
        raise invalid_status(
            f"Task {task.id} is {task.status}; only claimed or in_progress tasks can be rolled back",
            finished_step(task.status)
            or (
                "It is already open: cancel it (POST /api/v1/tasks/{id}/cancel) to get the escrow back."
                if task.status is TaskStatus.OPEN
                else "Accept the delivery, or request a revision and then roll the task back."
            ).replace("{id}", str(task.id)),
        )
    return Rollback(
        rejection=BidRejection(statuses=(ClaimStatus.ACCEPTED,), reason=REJECTED_FOR_ROLLBACK),
        task=TaskUpdate(task_id=task.id, status=TaskStatus.OPEN, unassign=True),
        events=tuple(announce.task_rolled_back(task)),
    )
