"""Wire types for tasks, bids and deliverables (TaskHive's field names)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypedDict

import msgspec
from msgspec import Meta

from app.http.schemas.common import NOT_BLANK, Timestamp
from domain.error_codes import (
    DUPLICATE_CLAIM,
    INVALID_CREDITS,
    SELF_CLAIM,
    TASK_NOT_FOUND,
    TASK_NOT_OPEN,
    VALIDATION_ERROR,
)
from domain.tasks import (
    MAX_ASSIGNMENT_HOURS,
    MAX_ELIGIBLE_AGENTS,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    ClaimMode,
    ClaimRecord,
    ClaimStatus,
    DeliverableRecord,
    DeliverableStatus,
    NewTask,
    Priority,
    TaskRecord,
    TaskStatus,
    normal_tags,
    parse_priority,
)

# Letters of either case: a tag is lower-cased before it is checked again and stored (domain.tasks.normal_tags).
Tag = Annotated[str, Meta(pattern=f"^[A-Za-z0-9-]{{1,{MAX_TAG_LENGTH}}}$", description="lower-cased when stored")]
PriorityIn = Literal["low", "normal", "medium", "high", "urgent"]


class TaskIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    title: Annotated[str, Meta(min_length=5, max_length=200)]
    description: Annotated[str, Meta(min_length=20, max_length=5000)]
    budget_credits: Annotated[int, Meta(ge=10, le=1_000_000_000)]
    category_id: Annotated[int, Meta(ge=1)] | None = None
    requirements: Annotated[str, Meta(max_length=5000)] | None = None
    deadline: Annotated[datetime, Meta(tz=True, description="ISO 8601 with a timezone")] | None = None
    max_revisions: Annotated[int, Meta(ge=0, le=5)] = 2
    claim_mode: Annotated[
        ClaimMode, Meta(description="`instant`: the first claim takes the task at its full budget")
    ] = ClaimMode.BID
    eligible_agent_ids: (
        Annotated[
            list[Annotated[int, Meta(ge=1)]],
            Meta(
                min_length=1,
                max_length=MAX_ELIGIBLE_AGENTS,
                description="The only agents (of other operators) that may see and take the task",
                extra_json_schema={"uniqueItems": True},
            ),
        ]
        | None
    ) = None
    metadata: (
        Annotated[
            dict[str, Any],
            Meta(
                description="Yours: at most 65,536 bytes as compact JSON, shown to your operator's agents only",
                extra_json_schema={"additionalProperties": True},
            ),
        ]
        | None
    ) = None
    callback_url: (
        Annotated[
            str,
            Meta(
                min_length=10,
                max_length=2048,
                description="Receives this task's events for the poster's side, signed like a webhook",
            ),
        ]
        | None
    ) = None
    expires_at: (
        Annotated[datetime, Meta(tz=True, description="RFC 3339; an open task expires then, its escrow refunded")]
        | None
    ) = None
    priority: Annotated[PriorityIn, Meta(description="`medium` is read as `normal`")] = "normal"
    tags: Annotated[list[Tag], Meta(max_length=MAX_TAGS)] = msgspec.field(default_factory=list)
    assignment_hours: (
        Annotated[
            int,
            Meta(
                ge=1,
                le=MAX_ASSIGNMENT_HOURS,
                description="An assignment that has not delivered within this many hours returns the task to open",
            ),
        ]
        | None
    ) = None

    def new_task(self) -> NewTask:
        return NewTask(
            title=self.title,
            description=self.description,
            budget_credits=self.budget_credits,
            category_id=self.category_id,
            requirements=self.requirements,
            deadline=self.deadline,
            max_revisions=self.max_revisions,
            claim_mode=self.claim_mode,
            eligible_agent_ids=tuple(self.eligible_agent_ids) if self.eligible_agent_ids is not None else None,
            metadata=self.metadata,
            callback_url=self.callback_url,
            expires_at=self.expires_at,
            priority=parse_priority(self.priority),
            tags=normal_tags(tuple(self.tags)),
            assignment_hours=self.assignment_hours,
        )


class CategoryOut(msgspec.Struct, kw_only=True):
    id: int
    name: str
    slug: str


class PosterOut(msgspec.Struct, kw_only=True):
    id: int
    name: str


class ListedFields(TypedDict):
    """The fields every task view shares (TaskListItemOut's), to build its subclasses from."""

    id: int
    title: str
    description: str
    budget_credits: int
    category: CategoryOut | None
    status: TaskStatus
    poster: PosterOut
    claims_count: int
    deadline: datetime | None
    max_revisions: int
    created_at: datetime
    claim_mode: ClaimMode
    priority: Priority
    tags: list[str]
    expires_at: datetime | None


class TaskListItemOut(msgspec.Struct, kw_only=True):
    id: int
    title: str
    description: str
    budget_credits: int
    category: CategoryOut | None
    status: TaskStatus
    poster: PosterOut
    claims_count: int
    deadline: Timestamp | None
    max_revisions: int
    created_at: Timestamp
    claim_mode: ClaimMode
    priority: Priority
    tags: list[str]
    expires_at: Timestamp | None

    @classmethod
    def fields_of(cls, task: TaskRecord) -> ListedFields:
        category = task.category
        return {
            "id": task.id,
            "title": task.title,
            "description": task.description,
            "budget_credits": task.budget_credits,
            "category": CategoryOut(id=category.id, name=category.name, slug=category.slug) if category else None,
            "status": task.status,
            "poster": PosterOut(id=task.poster_operator_id, name=task.poster_name),
            "claims_count": task.claims_count,
            "deadline": task.deadline,
            "max_revisions": task.max_revisions,
            "created_at": task.created_at,
            "claim_mode": task.claim_mode,
            "priority": task.priority,
            "tags": list(task.tags),
            "expires_at": task.expires_at,
        }

    @classmethod
    def of(cls, task: TaskRecord) -> TaskListItemOut:
        return cls(**cls.fields_of(task))


class SearchItemOut(TaskListItemOut, kw_only=True):
    relevance: float

    @classmethod
    def ranked(cls, task: TaskRecord) -> SearchItemOut:
        return cls(**cls.fields_of(task), relevance=round(task.relevance or 0.0, 3))


class TaskOut(TaskListItemOut, kw_only=True):
    """GET /tasks/{id}; also POST /tasks's answer, so it carries TaskHive's create fields category_id and poster_id."""

    category_id: int | None
    poster_id: int
    requirements: str | None
    claimed_by_agent_id: int | None
    price_credits: int | None
    deliverables_count: int
    auto_review_enabled: bool
    assignment_hours: int | None
    lease_expires_at: Annotated[Timestamp | None, Meta(description="When the running assignment's lease ends")]
    # The poster's own fields: null for any reader but the poster's operator's agents.
    eligible_agent_ids: list[int] | None
    metadata: dict[str, Any] | None
    callback_url: str | None

    @classmethod
    def detail(cls, task: TaskRecord) -> TaskOut:
        return cls(
            **cls.fields_of(task),
            category_id=task.category.id if task.category else None,
            poster_id=task.poster_operator_id,
            requirements=task.requirements,
            claimed_by_agent_id=task.claimed_by_agent_id,
            price_credits=task.price_credits,
            deliverables_count=task.deliverables_count,
            auto_review_enabled=task.auto_review_enabled,
            assignment_hours=task.assignment_hours,
            lease_expires_at=task.lease_expires_at,
            eligible_agent_ids=list(task.eligible_agent_ids) if task.eligible_agent_ids is not None else None,
            metadata=dict(task.metadata) if task.metadata is not None else None,
            callback_url=task.callback_url,
        )


class TaskCreatedOut(TaskOut, kw_only=True):
    """POST /tasks's answer: the task, and its callback's signing secret."""

    callback_secret: Annotated[
        str | None,
        Meta(
            description="Signs the deliveries to `callback_url` (`whsec_...`); shown only here, and in an "
            "Idempotency-Key replay of this request; null without a callback_url"
        ),
    ]

    @classmethod
    def created(cls, task: TaskRecord, callback_secret: str | None) -> TaskCreatedOut:
        return cls(**msgspec.structs.asdict(TaskOut.detail(task)), callback_secret=callback_secret)


# Optional in the schema because an instant task's claim may leave it out; a bid on a task in bid mode without it
# is refused as the schema would refuse it (422 VALIDATION_ERROR, domain.bids.place_bid).
ProposedCredits = Annotated[
    int,
    Meta(
        ge=1,
        le=1_000_000_000,
        description="Required on a task in `bid` mode; on an `instant` task leave it out or send the budget",
    ),
]


class BidIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    proposed_credits: ProposedCredits | None = None
    message: Annotated[str, Meta(max_length=1000)] | None = None


class BulkBidIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    task_id: Annotated[int, Meta(ge=1)]
    proposed_credits: ProposedCredits | None = None
    message: Annotated[str, Meta(max_length=1000)] | None = None


class BulkBidsIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    claims: Annotated[list[BulkBidIn], Meta(min_length=1, max_length=10)]


class ClaimOut(msgspec.Struct, kw_only=True):
    id: int
    task_id: int
    agent_id: int
    agent_name: str
    proposed_credits: int
    message: str | None
    status: ClaimStatus
    created_at: Timestamp

    @classmethod
    def of(cls, claim: ClaimRecord) -> ClaimOut:
        return cls(
            id=claim.id,
            task_id=claim.task_id,
            agent_id=claim.agent_id,
            agent_name=claim.agent_name,
            proposed_credits=claim.proposed_credits,
            message=claim.message,
            status=claim.status,
            created_at=claim.created_at,
        )


class MyClaimOut(msgspec.Struct, kw_only=True):
    id: int
    task_id: int
    task_title: str
    task_status: str
    proposed_credits: int
    message: str | None
    status: ClaimStatus
    created_at: Timestamp

    @classmethod
    def of(cls, claim: ClaimRecord) -> MyClaimOut:
        return cls(
            id=claim.id,
            task_id=claim.task_id,
            task_title=claim.task_title,
            task_status=claim.task_status.value if claim.task_status else "",
            message=claim.message,
            proposed_credits=claim.proposed_credits,
            status=claim.status,
            created_at=claim.created_at,
        )


class MyTaskOut(msgspec.Struct, kw_only=True):
    id: int
    title: str
    status: TaskStatus
    budget_credits: int
    price_credits: int | None
    category: str | None
    deadline: Timestamp | None
    max_revisions: int
    created_at: Timestamp

    @classmethod
    def of(cls, task: TaskRecord) -> MyTaskOut:
        return cls(
            id=task.id,
            title=task.title,
            status=task.status,
            budget_credits=task.budget_credits,
            price_credits=task.price_credits,
            category=task.category.name if task.category else None,
            deadline=task.deadline,
            max_revisions=task.max_revisions,
            created_at=task.created_at,
        )


class BidAcceptedOut(msgspec.Struct, kw_only=True):
    task_id: int
    claim_id: int
    agent_id: int
    status: Literal["accepted"] = "accepted"


class BidWithdrawnOut(msgspec.Struct, kw_only=True):
    claim_id: int
    task_id: int
    status: Literal["withdrawn"] = "withdrawn"


# What one bid of a bulk request can fail with (domain.bids.place_bid's checks, in its order); the rest of the
# request goes on.
BULK_ITEM_ERRORS = (TASK_NOT_FOUND, VALIDATION_ERROR, SELF_CLAIM, TASK_NOT_OPEN, INVALID_CREDITS, DUPLICATE_CLAIM)
if TYPE_CHECKING:  # mypy cannot evaluate a Literal built at run time: to it a code is a str
    BulkItemCode = str
else:
    BulkItemCode = Literal[tuple(c.code for c in BULK_ITEM_ERRORS)]


class BulkErrorOut(msgspec.Struct, kw_only=True):
    code: BulkItemCode
    message: str


class BulkItemOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    task_id: int
    ok: bool
    claim_id: int | None = None
    error: BulkErrorOut | None = None


class BulkSummaryOut(msgspec.Struct, kw_only=True):
    succeeded: int
    failed: int
    total: int


class BulkOut(msgspec.Struct, kw_only=True):
    results: list[BulkItemOut]
    summary: BulkSummaryOut


class DeliverableIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    content: Annotated[str, Meta(min_length=1, max_length=50_000)]


class DeliverableFields(TypedDict):
    """DeliverableOut's fields, to build SubmittedOut from."""

    id: int
    task_id: int
    agent_id: int
    content: str
    status: DeliverableStatus
    revision_notes: str | None
    revision_number: int
    submitted_at: datetime


class DeliverableOut(msgspec.Struct, kw_only=True):
    id: int
    task_id: int
    agent_id: int
    content: str
    status: DeliverableStatus
    revision_notes: str | None
    revision_number: int
    submitted_at: Timestamp

    @classmethod
    def fields_of(cls, record: DeliverableRecord) -> DeliverableFields:
        return {
            "id": record.id,
            "task_id": record.task_id,
            "agent_id": record.agent_id,
            "content": record.content,
            "status": record.status,
            "revision_notes": record.revision_notes,
            "revision_number": record.revision_number,
            "submitted_at": record.submitted_at,
        }

    @classmethod
    def of(cls, record: DeliverableRecord) -> DeliverableOut:
        return cls(**cls.fields_of(record))


class SubmittedOut(DeliverableOut, kw_only=True):
    is_late: bool

    @classmethod
    def of_delivery(cls, record: DeliverableRecord, *, is_late: bool) -> SubmittedOut:
        return cls(**cls.fields_of(record), is_late=is_late)


class RevisionIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    revision_notes: Annotated[str, Meta(min_length=1, max_length=5000, pattern=NOT_BLANK, description="not blank")]


class ReviewOut(msgspec.Struct, kw_only=True):
    task_id: int
    deliverable_id: int
    status: Literal["completed", "revision_requested"]


class TaskStatusOut(msgspec.Struct, kw_only=True):
    task_id: int
    status: TaskStatus
    message: str
