"""Tasks, bids (claims) and deliverables: their states, the errors their rules raise, and the settlement arithmetic.

The use cases themselves (what a bid, a delivery or a cancel does) are decided in domain.transitions,
domain.bids and domain.deliverables, from the state the services read under the task's row lock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from domain.errors import Conflict, Forbidden, NotFound, TooLarge, Unprocessable

MIN_BUDGET = 10
PLATFORM_FEE_PERCENT = 10
DEFAULT_MAX_REVISIONS = 2
MAX_TAGS = 10
MAX_TAG_LENGTH = 32
TAG = re.compile(r"[a-z0-9-]{1,32}")
MAX_ELIGIBLE_AGENTS = 20
#: A task's metadata, serialized as compact JSON (what a client sends without spaces), in bytes.
MAX_METADATA_BYTES = 65_536
MAX_ASSIGNMENT_HOURS = 720


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


class ClaimMode(StrEnum):
    BID = "bid"  # bids, one of which the poster accepts (TaskHive)
    INSTANT = "instant"  # the first claim takes the task at its full budget (AgentTasks)


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"

    @property
    def rank(self) -> int:
        """The priority sort's key, urgent highest (the task table's generated priority_rank, migration 0011)."""
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.URGENT: 3}


#: What other seed systems call a priority Agora names otherwise (Taskbox and Delegated say medium).
PRIORITY_ALIASES = {"medium": Priority.NORMAL}


def parse_priority(value: str) -> Priority:
    """A priority as sent; raises ValueError for one that is neither a priority nor an alias."""
    return PRIORITY_ALIASES.get(value) or Priority(value)


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
    claim_mode: ClaimMode = ClaimMode.BID
    eligible_agent_ids: tuple[int, ...] | None = None
    assignment_hours: int | None = None
    expires_at: datetime | None = None
    metadata: Mapping[str, object] | None = None  # echoed in the events the poster's side receives
    accepted_claim_id: int | None = None
    lease_expires_at: datetime | None = None  # the running assignment's lease, until its first delivery
    # The database's clock when the lock read the row (statement_timestamp()): expiry, leases and a new lease's end
    # are judged by it. None: a state not read from the database, for which no time has passed.
    read_at: datetime | None = None

    def visible_to(self, actor: Actor) -> bool:
        """A directed task exists only for its eligible agents and its poster's operator."""
        return (
            self.eligible_agent_ids is None
            or actor.operator_id == self.poster_operator_id
            or actor.agent_id in self.eligible_agent_ids
        )

    def expired_at(self, now: datetime) -> bool:
        """An open task whose expiry has passed: it expires at the next change that reads it, if no sweeper did."""
        return self.status is TaskStatus.OPEN and self.expires_at is not None and self.expires_at <= now

    def lease_ended_at(self, now: datetime) -> bool:
        """An assignment that has not delivered by its lease's end: it goes back to the pool at the next change."""
        return (
            self.status in (TaskStatus.CLAIMED, TaskStatus.IN_PROGRESS)
            and self.lease_expires_at is not None
            and self.lease_expires_at <= now
        )

    def new_lease(self) -> datetime | None:
        """When an assignment made now (as of `read_at`) must have delivered by: None for a task without
        `assignment_hours`."""
        if self.assignment_hours is None:
            return None
        if self.read_at is None:
            raise ValueError(f"task {self.id} was not read with the database's clock: its lease cannot start")
        return self.read_at + timedelta(hours=self.assignment_hours)


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


def not_poster(action: str) -> Forbidden:
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
    message = f"Task {task.id} is not open (current status: {task.status})"
    if task.claim_mode is ClaimMode.INSTANT and task.status in WORKING_STATUSES and not for_poster:
        message = (
            f"Task {task.id} was already taken: an instant task goes to its first claim (current status: {task.status})"
        )
    return Conflict(
        message,
        steps.get(task.status, "Browse open tasks with GET /api/v1/tasks.").replace("{id}", str(task.id)),
        code="TASK_NOT_OPEN",
    )


def require_visible(task: TaskState, actor: Actor) -> None:
    """A directed task does not exist for the agents it is not directed at: TASK_NOT_FOUND, as for no task."""
    if not task.visible_to(actor):
        raise task_not_found(task.id)


def invalid_status(message: str, suggestion: str) -> Conflict:
    return Conflict(message, suggestion, code="INVALID_STATUS")


def finished_step(status: TaskStatus) -> str | None:
    """What can be done about a finished task (nothing), or None while it is live."""
    return _FINISHED.get(status)


def claim_not_found(claim_id: int) -> NotFound:
    return NotFound(
        f"Claim {claim_id} not found on this task",
        "List bids with GET /api/v1/tasks/{id}/claims.",
        code="CLAIM_NOT_FOUND",
    )


def deliverable_not_found(deliverable_id: int) -> NotFound:
    return NotFound(
        f"Deliverable {deliverable_id} not found on this task",
        "List deliverables with GET /api/v1/tasks/{id}/deliverables.",
        code="DELIVERABLE_NOT_FOUND",
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
    claim_mode: ClaimMode = ClaimMode.BID
    eligible_agent_ids: tuple[int, ...] | None = None
    metadata: Mapping[str, object] | None = None
    callback_url: str | None = None
    expires_at: datetime | None = None
    priority: Priority = Priority.NORMAL
    tags: tuple[str, ...] = ()
    assignment_hours: int | None = None


def normal_tags(tags: tuple[str, ...]) -> tuple[str, ...]:
    """Tags lower-cased, each once, in the order given; VALIDATION_ERROR naming the first that is not a tag."""
    seen: list[str] = []
    for tag in tags:
        lowered = tag.lower()
        if not TAG.fullmatch(lowered):
            raise Unprocessable(
                f"tags: {tag!r} is not a tag (1-{MAX_TAG_LENGTH} characters of a-z, 0-9 and '-')",
                "Use short words such as python or data-entry.",
                code="VALIDATION_ERROR",
            )
        if lowered not in seen:
            seen.append(lowered)
    if len(seen) > MAX_TAGS:
        raise Unprocessable(
            f"tags: {len(seen)} tags, at most {MAX_TAGS} are allowed",
            "Keep the most telling ones.",
            code="VALIDATION_ERROR",
        )
    return tuple(seen)


def metadata_size(metadata: Mapping[str, object]) -> int:
    """The metadata's size as compact JSON, the form the limit is stated in."""
    return len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())


def check_new_task(task: NewTask, now: datetime) -> None:
    """The checks that need nothing from the database, in the order the errors are reported."""
    if task.deadline is not None and task.deadline <= now:
        raise Unprocessable(
            "deadline must be in the future", "Send an ISO 8601 deadline later than now.", code="INVALID_DEADLINE"
        )
    if task.expires_at is not None and task.expires_at <= now:
        raise Unprocessable(
            "expires_at must be in the future",
            "Send an RFC 3339 time later than now, e.g. 2030-01-01T00:00:00Z.",
            code="INVALID_EXPIRY",
        )
    if task.metadata is not None and (size := metadata_size(task.metadata)) > MAX_METADATA_BYTES:
        raise TooLarge(
            f"metadata is {size} bytes as compact JSON; at most {MAX_METADATA_BYTES} are allowed",
            "Keep large data elsewhere and put its reference (a URL, an id) in metadata.",
            code="METADATA_TOO_LARGE",
        )
    if task.eligible_agent_ids is not None:
        ids = task.eligible_agent_ids
        if not 1 <= len(ids) <= MAX_ELIGIBLE_AGENTS or len(set(ids)) != len(ids):
            raise Unprocessable(
                f"eligible_agent_ids must name 1 to {MAX_ELIGIBLE_AGENTS} different agents",
                "Name each agent allowed to take the task once, or leave the field out for an open task.",
                code="VALIDATION_ERROR",
            )


def ineligible_agent(agent_id: int) -> Unprocessable:
    return Unprocessable(
        f"eligible_agent_ids: agent {agent_id} is not an active agent of another operator",
        "Name active agents of other operators (GET /api/v1/agents/{id} shows an agent).",
        code="VALIDATION_ERROR",
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
    claim_mode: ClaimMode = ClaimMode.BID
    priority: Priority = Priority.NORMAL
    tags: tuple[str, ...] = ()
    expires_at: datetime | None = None
    assignment_hours: int | None = None
    lease_expires_at: datetime | None = None
    # The poster's own: None unless the reader is the poster's operator (the statement that reads them decides).
    eligible_agent_ids: tuple[int, ...] | None = None
    metadata: Mapping[str, object] | None = None
    callback_url: str | None = None
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
    PRIORITY = "priority"  # urgent first, then newest


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFilter:
    status: TaskStatus = TaskStatus.OPEN
    category_id: int | None = None
    min_budget: int | None = None
    max_budget: int | None = None
    priority: Priority | None = None
    tags: tuple[str, ...] = ()  # all must match
