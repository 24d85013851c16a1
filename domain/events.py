"""What happened, and who hears of it: the outbox's events, built from the state changes that cause them.

Every event is addressed: `agent_id` is the agent it is for, and an event without one is the task's public status
(GET /tasks/{id}/events). Recipients are the parties of a change, never every agent (TaskHive broadcast
`task.new_match` and `deliverable.submitted` to everyone with a webhook; see research/taskhive.md §9, items 11-12).
The one exception to one-row-per-recipient is `task.new_match`: a `MatchRequest`, written once and resolved to the
agents it reaches by whoever reads it.

Each event's payload is built in one place: here, except for the events whose recipients only the statement that
causes them knows, which that statement writes: `claim.rejected` (app.repo.claims, the bids it rejected) and
`credit.posted` (app.repo.ledger, the agents of each operator whose wallet moved); and `task.status`'s
`updated_at`, the transaction's clock, which the outbox's insert adds (app.repo.events).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from domain.tasks import TaskState, TaskStatus


class EventType(StrEnum):
    TASK_CREATED = "task.created"
    TASK_NEW_MATCH = "task.new_match"
    # TaskHive's stream event: every status change, to the task's parties and on the task's public stream.
    TASK_STATUS = "task.status"
    TASK_CANCELLED = "task.cancelled"
    TASK_ROLLED_BACK = "task.rolled_back"
    TASK_EXPIRED = "task.expired"
    CLAIM_CREATED = "claim.created"
    CLAIM_ACCEPTED = "claim.accepted"
    CLAIM_REJECTED = "claim.rejected"
    CLAIM_WITHDRAWN = "claim.withdrawn"
    CLAIM_LEASE_EXPIRED = "claim.lease_expired"
    COMMENT_CREATED = "comment.created"
    DELIVERABLE_SUBMITTED = "deliverable.submitted"
    DELIVERABLE_ACCEPTED = "deliverable.accepted"
    DELIVERABLE_REVISION_REQUESTED = "deliverable.revision_requested"
    CREDIT_POSTED = "credit.posted"
    WEBHOOK_DISABLED = "webhook.disabled"
    # Sent only to the one endpoint being tested (POST /webhooks/{id}/test); no one subscribes to it.
    WEBHOOK_PING = "webhook.ping"


SUBSCRIBABLE: tuple[str, ...] = tuple(t.value for t in EventType if t is not EventType.WEBHOOK_PING)

# Why a bid was rejected; each rejected bid's agent gets `claim.rejected`, written by the statement that rejects
# the bids (app.repo.claims), so the events name exactly the bids that transaction rejected.
REJECTED_FOR_ANOTHER_BID = "another bid was accepted"
REJECTED_FOR_CANCEL = "the task was cancelled"
REJECTED_FOR_ROLLBACK = "the task was rolled back"
REJECTED_FOR_EXPIRY = "the task expired"
REJECTED_FOR_LEASE_END = "the assignment's lease ended before a delivery"

#: How many words of a task's title and tags are compared with agents' capabilities for `task.new_match`.
MAX_MATCH_TERMS = 64
_WORD = re.compile(r"[\w+#.-]+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    agent_id: int | None  # the recipient; None: the task's public stream
    task_id: int | None
    data: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MatchRequest:
    """`task.new_match` goes to active agents of other operators whose categories include the task's category or
    whose capabilities name a word of its title or tags (case-insensitive). It is stored once with these criteria;
    the readers find the agents (as they are when they read it: streams as they read, webhooks at the fan-out)."""

    task_id: int
    poster_operator_id: int
    category_id: int | None
    terms: tuple[str, ...]
    data: Mapping[str, object]


def match_terms(title: str, tags: Iterable[str] = ()) -> tuple[str, ...]:
    words: list[str] = []
    for word in [*_WORD.findall(title), *tags]:
        word = word.strip(".-").lower()
        if word and word not in words:
            words.append(word)
    return tuple(words[:MAX_MATCH_TERMS])


def addressed(task: TaskState, type: EventType, agent_id: int | None, data: Mapping[str, object]) -> Event:
    """An event of `task` for `agent_id`: the poster's agent gets the task's metadata echoed in it (DESIGN §5),
    nobody else does (the task's public stream included)."""
    if task.metadata is not None and agent_id is not None and agent_id == task.poster_agent_id:
        data = {**data, "metadata": task.metadata}
    return Event(type, agent_id, task.id, data)


def _parties(*agent_ids: int | None) -> list[int]:
    seen: list[int] = []
    for agent_id in agent_ids:
        if agent_id is not None and agent_id not in seen:
            seen.append(agent_id)
    return seen


def status_changed(
    task: TaskState, status: TaskStatus, *, claimed_by_agent_id: int | None, parties: Iterable[int | None]
) -> list[Event]:
    """`task.status` on the task's public stream and to each party, in TaskHive's payload shape."""
    data = {
        "task_id": task.id,
        "title": task.title,
        "status": status.value,
        "previous_status": task.status.value,
        "claimed_by_agent_id": claimed_by_agent_id,
    }
    recipients = [None, *_parties(*parties)]
    return [addressed(task, EventType.TASK_STATUS, agent_id, data) for agent_id in recipients]


def task_posted(
    *,
    task_id: int,
    title: str,
    budget_credits: int,
    category_id: int | None,
    poster_agent_id: int,
    poster_operator_id: int,
    tags: tuple[str, ...] = (),
    eligible_agent_ids: tuple[int, ...] | None = None,
    metadata: Mapping[str, object] | None = None,
) -> tuple[list[Event], MatchRequest | None]:
    """`task.created` to the poster; `task.new_match` to the agents it matches, or, for a directed task, to each
    of its eligible agents and no one else (`reason: "directed"`)."""
    data = {"task_id": task_id, "title": title, "budget_credits": budget_credits, "category_id": category_id}
    public = {"task_id": task_id, "title": title, "status": TaskStatus.OPEN.value, "previous_status": None}
    created = {**data, "metadata": metadata} if metadata is not None else data
    events = [
        Event(EventType.TASK_STATUS, None, task_id, {**public, "claimed_by_agent_id": None}),
        Event(EventType.TASK_CREATED, poster_agent_id, task_id, created),
    ]
    if eligible_agent_ids is not None:
        directed = {**data, "reason": "directed"}
        events += [Event(EventType.TASK_NEW_MATCH, agent_id, task_id, directed) for agent_id in eligible_agent_ids]
        return events, None
    match = MatchRequest(task_id, poster_operator_id, category_id, match_terms(title, tags), data)
    return events, match


def bid_placed(task: TaskState, *, claim_id: int, agent_id: int, proposed_credits: int) -> list[Event]:
    data = {"task_id": task.id, "claim_id": claim_id, "agent_id": agent_id, "proposed_credits": proposed_credits}
    return [addressed(task, EventType.CLAIM_CREATED, task.poster_agent_id, data)]


def bid_withdrawn(task: TaskState, *, claim_id: int, agent_id: int) -> list[Event]:
    data = {"task_id": task.id, "claim_id": claim_id, "agent_id": agent_id}
    return [addressed(task, EventType.CLAIM_WITHDRAWN, task.poster_agent_id, data)]


def bid_accepted(task: TaskState, *, claim_id: int, agent_id: int, price_credits: int) -> list[Event]:
    """The winner hears `claim.accepted` (the other pending bidders `claim.rejected`, which TaskHive never sent)."""
    accepted = {"task_id": task.id, "claim_id": claim_id, "agent_id": agent_id, "price_credits": price_credits}
    return [
        *status_changed(
            task, TaskStatus.CLAIMED, claimed_by_agent_id=agent_id, parties=(task.poster_agent_id, agent_id)
        ),
        addressed(task, EventType.CLAIM_ACCEPTED, agent_id, accepted),
    ]


def work_delivered(task: TaskState, *, deliverable_id: int, agent_id: int, revision_number: int) -> list[Event]:
    data = {
        "task_id": task.id,
        "deliverable_id": deliverable_id,
        "agent_id": agent_id,
        "revision_number": revision_number,
    }
    return [
        *status_changed(
            task, TaskStatus.DELIVERED, claimed_by_agent_id=agent_id, parties=(task.poster_agent_id, agent_id)
        ),
        addressed(task, EventType.DELIVERABLE_SUBMITTED, task.poster_agent_id, data),
    ]


def revision_requested(task: TaskState, *, deliverable_id: int, notes: str) -> list[Event]:
    worker = task.claimed_by_agent_id
    data = {"task_id": task.id, "deliverable_id": deliverable_id, "revision_notes": notes}
    return [
        *status_changed(
            task, TaskStatus.IN_PROGRESS, claimed_by_agent_id=worker, parties=(task.poster_agent_id, worker)
        ),
        addressed(task, EventType.DELIVERABLE_REVISION_REQUESTED, worker, data),
    ]


def work_accepted(task: TaskState, *, deliverable_id: int, credits_paid: int, platform_fee: int) -> list[Event]:
    worker = task.claimed_by_agent_id
    data = {
        "task_id": task.id,
        "deliverable_id": deliverable_id,
        "credits_paid": credits_paid,
        "platform_fee": platform_fee,
    }
    return [
        *status_changed(task, TaskStatus.COMPLETED, claimed_by_agent_id=worker, parties=(task.poster_agent_id, worker)),
        addressed(task, EventType.DELIVERABLE_ACCEPTED, worker, data),
    ]


def task_cancelled(task: TaskState) -> list[Event]:
    """Cancel: the poster and any worker hear `task.cancelled` (every open bid's agent `claim.rejected`)."""
    parties = _parties(task.poster_agent_id, task.claimed_by_agent_id)
    data = {"task_id": task.id, "previous_status": task.status.value, "refunded_credits": task.budget_credits}
    return [
        *status_changed(task, TaskStatus.CANCELLED, claimed_by_agent_id=None, parties=parties),
        *(addressed(task, EventType.TASK_CANCELLED, agent_id, data) for agent_id in parties),
    ]


def task_rolled_back(task: TaskState) -> list[Event]:
    """Rollback reopens the task: poster and displaced worker hear `task.rolled_back` (the worker `claim.rejected`)."""
    parties = _parties(task.poster_agent_id, task.claimed_by_agent_id)
    data = {"task_id": task.id, "previous_status": task.status.value, "previous_agent_id": task.claimed_by_agent_id}
    return [
        *status_changed(task, TaskStatus.OPEN, claimed_by_agent_id=None, parties=parties),
        *(addressed(task, EventType.TASK_ROLLED_BACK, agent_id, data) for agent_id in parties),
    ]


def comment_created(
    task: TaskState,
    *,
    comment_id: int,
    agent_id: int,
    agent_name: str,
    content: str,
    participants: Iterable[int | None],
) -> list[Event]:
    """`comment.created` to each of the conversation's participants once, its author excepted (and never on the
    task's public stream: the conversation is its participants')."""
    data = {
        "task_id": task.id,
        "comment_id": comment_id,
        "agent_id": agent_id,
        "agent_name": agent_name,
        "content": content,
    }
    recipients = [party for party in _parties(*participants) if party != agent_id]
    return [addressed(task, EventType.COMMENT_CREATED, party, data) for party in recipients]


def task_expired(task: TaskState, bidders: Iterable[int]) -> list[Event]:
    """Expiry: the poster and every agent whose bid it rejects hear `task.expired` (those agents `claim.rejected`
    too); the task's stream and the poster see it become `expired`."""
    expires_at = task.expires_at.isoformat() if task.expires_at is not None else None
    data = {"task_id": task.id, "expires_at": expires_at, "refunded_credits": task.budget_credits}
    return [
        *status_changed(task, TaskStatus.EXPIRED, claimed_by_agent_id=None, parties=(task.poster_agent_id,)),
        *(
            addressed(task, EventType.TASK_EXPIRED, agent_id, data)
            for agent_id in _parties(task.poster_agent_id, *bidders)
        ),
    ]


def lease_expired(task: TaskState) -> list[Event]:
    """A lease ran out: the task reopens (a rollback's effects), the worker and the poster hear
    `claim.lease_expired` (the worker `claim.rejected` too)."""
    parties = _parties(task.poster_agent_id, task.claimed_by_agent_id)
    lease = task.lease_expires_at.isoformat() if task.lease_expires_at is not None else None
    data = {
        "task_id": task.id,
        "claim_id": task.accepted_claim_id,
        "agent_id": task.claimed_by_agent_id,
        "assignment": task.assignment,
        "previous_status": task.status.value,
        "lease_expires_at": lease,
    }
    return [
        *status_changed(task, TaskStatus.OPEN, claimed_by_agent_id=None, parties=parties),
        *(addressed(task, EventType.CLAIM_LEASE_EXPIRED, agent_id, data) for agent_id in parties),
    ]


def webhook_disabled(
    *,
    owner_agent_id: int,
    webhook_id: int,
    url: str,
    reason: str,
    task_id: int | None = None,
    metadata: Mapping[str, object] | None = None,
) -> list[Event]:
    """The endpoint's owner hears that deliveries to it stopped, and why. A task's callback (`task_id`) is its
    poster agent's: the event names the task and echoes its metadata like the task's other poster-side events, and
    reaches that agent's stream and webhooks (not the callback, which is off by then)."""
    data: dict[str, object] = {"webhook_id": webhook_id, "url": url, "reason": reason}
    if task_id is not None:
        data["task_id"] = task_id
        if metadata is not None:
            data["metadata"] = metadata
    return [Event(EventType.WEBHOOK_DISABLED, owner_agent_id, task_id, data)]


def webhook_ping(webhook_id: int) -> dict[str, object]:
    """`webhook.ping`'s payload: sent to the one endpoint being tested, so it has no recipient agent."""
    return {"webhook_id": webhook_id, "message": "Test delivery from Agora"}
