"""Deliverables: delivering work, accepting it (the escrow's settlement) and sending it back for a revision.

See domain.transitions for the shape every use case shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain import events as announce
from domain.errors import Conflict, Forbidden
from domain.events import Event
from domain.ledger import Posting, TransferKind, TransferRequest, balanced
from domain.tasks import (
    Actor,
    DeliverableStatus,
    Settlement,
    TaskState,
    TaskStatus,
    deliverable_not_found,
    finished_step,
    invalid_status,
    not_poster,
    require_visible,
    settle,
)
from domain.transitions import DeliverableFacts, LockedTask, TaskUpdate


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryState:
    """A task under its row lock and how many deliveries its current assignment has had."""

    task: TaskState
    deliveries_this_assignment: int
    # When the delivering agent's lease on the task's latest assignment ran out, if it did: a late delivery is told.
    lease_ended_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverableUpdate:
    deliverable_id: int
    status: DeliverableStatus
    revision_notes: str | None = None  # None: the notes stay as they are


# --- deliver ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NewDeliverable:
    task_id: int
    agent_id: int
    assignment: int
    content: str
    revision_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """The deliverable to insert and the task's next status; `events` names it once the insert gave it an id."""

    task: TaskState
    deliverable: NewDeliverable
    update: TaskUpdate

    def events(self, deliverable_id: int) -> tuple[Event, ...]:
        new = self.deliverable
        delivered = announce.work_delivered(
            self.task, deliverable_id=deliverable_id, agent_id=new.agent_id, revision_number=new.revision_number
        )
        return tuple(delivered)

    def is_late(self, submitted_at: datetime) -> bool:
        return self.task.deadline is not None and submitted_at > self.task.deadline


def deliver(state: DeliveryState, actor: Actor, content: str) -> Delivery:
    """Order: NOT_CLAIMED_BY_YOU (INVALID_STATUS for a worker whose lease ran out), INVALID_STATUS, MAX_REVISIONS.
    Revision numbers count deliveries per assignment."""
    task, so_far = state.task, state.deliveries_this_assignment
    require_visible(task, actor)
    if task.claimed_by_agent_id != actor.agent_id and state.lease_ended_at is not None:
        raise invalid_status(
            f"Your lease on task {task.id} ended at {state.lease_ended_at.isoformat()} before a delivery: "
            "the assignment was withdrawn and the task went back to open",
            "Deliver within the task's assignment_hours next time; claim it again while it is open.",
        )
    if task.claimed_by_agent_id != actor.agent_id:
        raise Forbidden(
            "This task is not claimed by you", "Deliver only tasks assigned to your agent.", code="NOT_CLAIMED_BY_YOU"
        )
    if task.status not in (TaskStatus.CLAIMED, TaskStatus.IN_PROGRESS):
        raise invalid_status(
            f"Task {task.id} is {task.status}; deliverables are accepted while claimed or in_progress",
            finished_step(task.status)
            or "Wait for the poster to accept your delivery or ask for a revision; then deliver again.",
        )
    revision_number = so_far + 1
    if revision_number > task.max_revisions + 1:
        raise Conflict(
            f"Maximum revisions reached ({so_far} of {task.max_revisions + 1} deliveries)",
            "No more deliveries are allowed in this assignment; the poster can still accept the last one.",
            code="MAX_REVISIONS",
        )
    new = NewDeliverable(
        task_id=task.id,
        agent_id=actor.agent_id,
        assignment=task.assignment,
        content=content,
        revision_number=revision_number,
    )
    return Delivery(task=task, deliverable=new, update=TaskUpdate(task_id=task.id, status=TaskStatus.DELIVERED))


# --- review: accept or request a revision ------------------------------------------------------------------------


def _check_review(state: LockedTask, actor: Actor, deliverable_id: int) -> DeliverableFacts:
    """FORBIDDEN, INVALID_STATUS (task), DELIVERABLE_NOT_FOUND, INVALID_STATUS (deliverable)."""
    task, deliverable = state.task, state.deliverable
    require_visible(task, actor)
    if task.poster_operator_id != actor.operator_id:
        raise not_poster("review deliverables")
    if task.status is not TaskStatus.DELIVERED:
        raise invalid_status(
            f"Task {task.id} is {task.status}, not delivered",
            finished_step(task.status) or "Wait for the worker to deliver; deliveries are reviewed while delivered.",
        )
    if deliverable is None or deliverable.task_id != task.id:
        raise deliverable_not_found(deliverable_id)
    if deliverable.status is not DeliverableStatus.SUBMITTED:
        raise invalid_status(f"Deliverable is already {deliverable.status}", "Review the latest submitted delivery.")
    return deliverable


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkAcceptance:
    deliverable: DeliverableUpdate
    task: TaskUpdate
    worker_agent_id: int  # whose record counts one more completed task
    settlement: Settlement
    transfer: TransferRequest  # empties the escrow: the worker's pay, the platform fee and the poster's change
    events: tuple[Event, ...]


def accept_work(state: LockedTask, actor: Actor, deliverable_id: int) -> WorkAcceptance:
    """One transfer settles the escrow: price minus the fee to the worker, the fee to revenue, the rest back."""
    task, accounts = state.task, state.accounts
    _check_review(state, actor, deliverable_id)
    worker, price, worker_wallet = task.claimed_by_agent_id, task.price_credits, accounts.worker_wallet
    if worker is None or price is None or worker_wallet is None:  # a delivered task has all three (CHECKs)
        raise RuntimeError(f"delivered task {task.id} lacks its worker, price or the worker's wallet")
    split = settle(task.budget_credits, price)
    transfer = balanced(
        TransferKind.SETTLEMENT,
        f"Settlement of task {task.id}",
        (
            Posting(accounts.escrow, -task.budget_credits),
            Posting(worker_wallet, split.worker),
            Posting(accounts.revenue, split.fee),
            Posting(accounts.poster_wallet, split.refund),
        ),
        task_id=task.id,
        agent_id=worker,
    )
    events = announce.work_accepted(
        task, deliverable_id=deliverable_id, credits_paid=split.worker, platform_fee=split.fee
    )
    return WorkAcceptance(
        deliverable=DeliverableUpdate(deliverable_id=deliverable_id, status=DeliverableStatus.ACCEPTED),
        task=TaskUpdate(task_id=task.id, status=TaskStatus.COMPLETED),
        worker_agent_id=worker,
        settlement=split,
        transfer=transfer,
        events=tuple(events),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RevisionRequest:
    deliverable: DeliverableUpdate
    task: TaskUpdate
    worker_agent_id: int
    events: tuple[Event, ...]


def request_revision(state: LockedTask, actor: Actor, deliverable_id: int, notes: str) -> RevisionRequest:
    """The review's checks, then MAX_REVISIONS: the deliverable goes back with the notes, the task to in_progress."""
    task = state.task
    deliverable = _check_review(state, actor, deliverable_id)
    if deliverable.revision_number >= task.max_revisions + 1:
        raise Conflict(
            f"Maximum revisions reached ({deliverable.revision_number} of {task.max_revisions + 1} deliveries)",
            "Accept this deliverable: no revision rounds are left.",
            code="MAX_REVISIONS",
        )
    worker = task.claimed_by_agent_id
    if worker is None:  # a delivered task has a worker (a CHECK)
        raise RuntimeError(f"delivered task {task.id} has no worker")
    update = DeliverableUpdate(
        deliverable_id=deliverable_id, status=DeliverableStatus.REVISION_REQUESTED, revision_notes=notes
    )
    return RevisionRequest(
        deliverable=update,
        task=TaskUpdate(task_id=task.id, status=TaskStatus.IN_PROGRESS),
        worker_agent_id=worker,
        events=tuple(announce.revision_requested(task, deliverable_id=deliverable_id, notes=notes)),
    )
