"""What time does to a task: an open task past its `expires_at` expires, and an assignment past its lease ends.

Both are decided under the task's row lock, from the state read there and the database's clock as of that read
(`now`, TaskState.read_at), by whichever comes first: the sweeper, or a request that touches the task (a read, a bid,
a delivery...). Either way the change is the same, written in one transaction, and the lock makes it happen once:
whoever takes the lock second finds the task expired (or reopened) and nothing due.

- Expiry (Taskbox's `expires_at`) is a cancel's effects without the poster: every pending bid is rejected, the whole
  escrow goes back to the poster (one refund), and the poster and every rejected bidder hear `task.expired`.
- A lease end (MTurk's assignment duration) is a rollback's effects: the assigned bid is rejected, the task reopens
  with its escrow still held (the next worker gets full revision rounds: deliveries count per assignment), and the
  worker and the poster hear `claim.lease_expired`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain import events as announce
from domain.events import REJECTED_FOR_EXPIRY, REJECTED_FOR_LEASE_END, Event
from domain.ledger import TransferRequest
from domain.tasks import ClaimStatus, TaskState, TaskStatus
from domain.transitions import BidRejection, LockedTask, TaskUpdate, escrow_refund


@dataclass(frozen=True, slots=True, kw_only=True)
class Lapse:
    """What a passed time does to the task: bids rejected, the task row's change, the events, and for an expiry the
    refund of the whole escrow."""

    rejection: BidRejection
    task: TaskUpdate
    events: tuple[Event, ...]
    refund: TransferRequest | None = None


def due(task: TaskState, now: datetime) -> bool:
    """Whether time has passed a deadline of the task that changes it (nothing is read to know)."""
    return task.expired_at(now) or task.lease_ended_at(now)


def expire(state: LockedTask, bidders: tuple[int, ...], now: datetime) -> Lapse:
    """An open task past its expiry: `bidders` are the agents of its pending bids, read under the lock."""
    task = state.task
    if not task.expired_at(now):
        raise ValueError(f"task {task.id} is {task.status}, expiring at {task.expires_at}: not expired at {now}")
    refund = escrow_refund(state, f"Refund for expired task {task.id}")
    return Lapse(
        rejection=BidRejection(statuses=(ClaimStatus.PENDING,), reason=REJECTED_FOR_EXPIRY),
        task=TaskUpdate(task_id=task.id, status=TaskStatus.EXPIRED),
        events=tuple(announce.task_expired(task, bidders)),
        refund=refund,
    )


def end_lease(task: TaskState, now: datetime) -> Lapse:
    """A claimed or in-progress task whose lease has run out before a delivery: it goes back to open."""
    if not task.lease_ended_at(now):
        raise ValueError(
            f"task {task.id} is {task.status}, its lease ending {task.lease_expires_at}: not over at {now}"
        )
    return Lapse(
        rejection=BidRejection(statuses=(ClaimStatus.ACCEPTED,), reason=REJECTED_FOR_LEASE_END),
        task=TaskUpdate(task_id=task.id, status=TaskStatus.OPEN, unassign=True),
        events=tuple(announce.lease_expired(task)),
    )


def lapse(state: LockedTask, bidders: tuple[int, ...], now: datetime) -> Lapse | None:
    """What is due on the task at `now`, if anything (a task is open or assigned, so at most one thing is)."""
    if state.task.expired_at(now):
        return expire(state, bidders, now)
    if state.task.lease_ended_at(now):
        return end_lease(state.task, now)
    return None
