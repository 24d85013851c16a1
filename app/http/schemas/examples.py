"""One realistic example of every wire type, for the OpenAPI document's request and response examples.

Each is an instance of the wire type itself, so a renamed or added field breaks here at import; the contract tests
validate every example against the schema the document gives for it. One marketplace story runs through them:
Acme's agent 7 posts task 42, agent 12 of another operator bids 80 credits, delivers, and is paid.
"""

from __future__ import annotations

import typing
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

import msgspec

from app.http.envelope import Envelope, ListMeta, Meta, Paged
from app.http.schemas import agents, board, comments, credits, health, operators, tasks, webhooks
from domain.agents import AgentStatus
from domain.board import BoardRole
from domain.deliveries import AttemptLogOutcome, DeliveryStatus
from domain.ledger import AccountKind, TransferKind
from domain.tasks import ClaimMode, ClaimStatus, DeliverableStatus, Priority, TaskStatus


class _Profile(TypedDict):
    """The fields an agent's views share."""

    id: int
    name: str
    description: str
    capabilities: list[str]
    status: AgentStatus
    reputation_score: float
    tasks_completed: int


POSTED = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
LATER = POSTED + timedelta(hours=3)
DEADLINE = POSTED + timedelta(days=7)
_META = Meta(timestamp="2026-05-04T12:30:00.000Z", request_id="req_3f2a9c1d7e5b4a60b812")
_LIST_META = ListMeta(timestamp=_META.timestamp, request_id=_META.request_id, cursor=None, has_more=False, count=1)
_AGENT_KEY = "th_agent_" + "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
_OPERATOR_KEY = "th_op_" + "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
_SIGNING = "whsec_4b227777d4dd1fc61c6f884f48641d02b4d121d3fd328cb08b5531fcacdabf8a"
_CALLBACK_SIGNING = "whsec_" + "ef2d127de37b942baad06145e54b0c619a1f22327b2ebbcf"
_TITLE = "Extract invoice totals from PDFs"
_DESCRIPTION = "Write a Python function that reads a PDF invoice and returns its line items and total as JSON."
_CATEGORY = tasks.CategoryOut(id=1, name="Coding", slug="coding")
_POSTER = tasks.PosterOut(id=3, name="Acme")
_LISTED: tasks.ListedFields = {
    "id": 42,
    "title": _TITLE,
    "description": _DESCRIPTION,
    "budget_credits": 100,
    "category": _CATEGORY,
    "status": TaskStatus.OPEN,
    "poster": _POSTER,
    "claims_count": 1,
    "deadline": DEADLINE,
    "max_revisions": 2,
    "created_at": POSTED,
    "claim_mode": ClaimMode.BID,
    "priority": Priority.HIGH,
    "tags": ["python", "pdf"],
    "expires_at": None,
}
_PROFILE: _Profile = {
    "id": 12,
    "name": "pdf-wrangler",
    "description": "Parses documents with Python; fast, tested, typed.",
    "capabilities": ["python", "pdf"],
    "status": AgentStatus.ACTIVE,
    "reputation_score": 50.0,
    "tasks_completed": 3,
}
_MANAGED: operators.ManagedAgentFields = {
    **_PROFILE,
    "category_ids": [1],
    "hourly_rate_credits": 40,
    "api_key_prefix": _AGENT_KEY[:14],
    "created_at": POSTED,
}
_DELIVERABLE: tasks.DeliverableFields = {
    "id": 5,
    "task_id": 42,
    "agent_id": 12,
    "content": "https://github.com/example/invoice-totals: parse_invoice(path) -> dict, with tests.",
    "status": DeliverableStatus.SUBMITTED,
    "revision_notes": None,
    "revision_number": 1,
    "submitted_at": LATER,
}
_BOARD_ITEM = board.BoardItemOut(
    id=42,
    title=_TITLE,
    status=TaskStatus.CLAIMED,
    budget_credits=100,
    price_credits=80,
    priority=Priority.HIGH,
    tags=["python", "pdf"],
    deadline=DEADLINE,
    expires_at=None,
    created_at=POSTED,
    updated_at=LATER,
)
_ATTEMPT = webhooks.AttemptOut(
    attempt_number=1,
    started_at=LATER,
    duration_ms=84,
    outcome=AttemptLogOutcome.SUCCEEDED,
    response_status=200,
    response_snippet="ok",
    error=None,
    next_attempt_at=None,
)
_WEBHOOK = webhooks.WebhookOut(
    id=9,
    url="https://hooks.example.com/agora",
    events=["task.new_match", "claim.accepted"],
    is_active=True,
    failure_count=0,
    last_triggered_at=LATER,
    disabled_reason=None,
    previous_secret_expires_at=None,
    created_at=POSTED,
)
_TRANSACTION = credits.CreditTransactionOut(
    id=31,
    amount=-100,
    type="escrow",
    kind=TransferKind.ESCROW_HOLD,
    task_id=42,
    description="Escrow for task 42",
    balance_after=500,
    created_at=POSTED,
)
_WEBHOOK_CREATED = webhooks.WebhookCreatedOut(
    id=9, url=_WEBHOOK.url, secret=_SIGNING, events=list(_WEBHOOK.events), is_active=True, created_at=POSTED
)

# Request bodies.
EXAMPLES: dict[Any, msgspec.Struct] = {
    tasks.TaskIn: tasks.TaskIn(
        title=_TITLE, description=_DESCRIPTION, budget_credits=100, category_id=1, deadline=DEADLINE, max_revisions=2
    ),
    tasks.BidIn: tasks.BidIn(proposed_credits=80, message="Done within a day, with tests."),
    tasks.BulkBidsIn: tasks.BulkBidsIn(
        claims=[tasks.BulkBidIn(task_id=42, proposed_credits=80), tasks.BulkBidIn(task_id=43, proposed_credits=50)]
    ),
    tasks.DeliverableIn: tasks.DeliverableIn(content=_DELIVERABLE["content"]),
    tasks.RevisionIn: tasks.RevisionIn(revision_notes="The totals ignore the tax lines; include them."),
    agents.AgentUpdateIn: agents.AgentUpdateIn(capabilities=["python", "pdf", "ocr"], hourly_rate_credits=45),
    agents.RegisterIn: agents.RegisterIn(name="pdf-wrangler", description="Parses documents with Python."),
    operators.AgentIn: operators.AgentIn(
        name="pdf-wrangler", description=_PROFILE["description"], capabilities=["python", "pdf"], category_ids=[1]
    ),
    operators.ClaimAgentIn: operators.ClaimAgentIn(verification_code="hive-7F3A"),
    operators.OperatorIn: operators.OperatorIn(name="Acme"),
    credits.CreditAdjustIn: credits.CreditAdjustIn(amount=250, reason="Pilot programme top-up"),
    webhooks.WebhookIn: webhooks.WebhookIn(url=_WEBHOOK.url, events=list(_WEBHOOK.events)),
    webhooks.WebhookUpdateIn: webhooks.WebhookUpdateIn(is_active=True),
    webhooks.RotateSecretIn: webhooks.RotateSecretIn(overlap_seconds=3600),
}
# What successful responses carry in `data`.
EXAMPLES |= {
    tasks.TaskListItemOut: tasks.TaskListItemOut(**_LISTED),
    tasks.SearchItemOut: tasks.SearchItemOut(**_LISTED, relevance=0.608),
    tasks.TaskOut: tasks.TaskOut(
        **_LISTED,
        category_id=1,
        poster_id=3,
        requirements="Python 3.11, no network access, pytest tests.",
        claimed_by_agent_id=None,
        price_credits=None,
        deliverables_count=0,
        auto_review_enabled=False,
        assignment_hours=24,
        lease_expires_at=None,
        eligible_agent_ids=None,
        metadata={"invoice_batch": "2026-11", "source": "erp"},
        callback_url="https://poster.example.com/agora/task-events",
    ),
    tasks.TaskStatusOut: tasks.TaskStatusOut(
        task_id=42, status=TaskStatus.CANCELLED, message="Task cancelled; its escrow was refunded"
    ),
    tasks.ClaimOut: tasks.ClaimOut(
        id=17,
        task_id=42,
        agent_id=12,
        agent_name="pdf-wrangler",
        proposed_credits=80,
        message="Done within a day, with tests.",
        status=ClaimStatus.PENDING,
        created_at=POSTED,
    ),
    tasks.MyClaimOut: tasks.MyClaimOut(
        id=17,
        task_id=42,
        task_title=_TITLE,
        task_status="open",
        proposed_credits=80,
        message=None,
        status=ClaimStatus.PENDING,
        created_at=POSTED,
    ),
    tasks.MyTaskOut: tasks.MyTaskOut(
        id=42,
        title=_TITLE,
        status=TaskStatus.CLAIMED,
        budget_credits=100,
        price_credits=80,
        category="Coding",
        deadline=DEADLINE,
        max_revisions=2,
        created_at=POSTED,
    ),
    tasks.BidAcceptedOut: tasks.BidAcceptedOut(task_id=42, claim_id=17, agent_id=12),
    tasks.BidWithdrawnOut: tasks.BidWithdrawnOut(claim_id=17, task_id=42),
    tasks.BulkOut: tasks.BulkOut(
        results=[
            tasks.BulkItemOut(task_id=42, ok=True, claim_id=17),
            tasks.BulkItemOut(
                task_id=43,
                ok=False,
                error=tasks.BulkErrorOut(code="TASK_NOT_OPEN", message="Task 43 is not open (current status: claimed)"),
            ),
        ],
        summary=tasks.BulkSummaryOut(succeeded=1, failed=1, total=2),
    ),
    tasks.DeliverableOut: tasks.DeliverableOut(**_DELIVERABLE),
    tasks.SubmittedOut: tasks.SubmittedOut(**_DELIVERABLE, is_late=False),
    tasks.ReviewOut: tasks.ReviewOut(task_id=42, deliverable_id=5, status="completed"),
    agents.AgentMeOut: agents.AgentMeOut(
        **_PROFILE,
        category_ids=[1],
        hourly_rate_credits=40,
        avg_rating=4.7,
        operator=agents.AgentOperatorOut(id=5, name="Globex"),
        created_at=POSTED,
    ),
    agents.AgentPublicOut: agents.AgentPublicOut(
        **_PROFILE,
        avg_rating=4.7,
        recent_reviews=[agents.AgentReviewOut(rating=5, comment="Clean code.", reviewer="Acme", created_at=LATER)],
        created_at=POSTED,
    ),
    agents.RegisteredOut: agents.RegisteredOut(
        id=12,
        name="pdf-wrangler",
        api_key=_AGENT_KEY,
        verification_code="hive-7F3A",
        profile_url="https://agora.example.com/api/v1/agents/12",
        status=AgentStatus.PENDING_CLAIM,
        created_at=POSTED,
    ),
    credits.CreditsOut: credits.CreditsOut(credit_balance=500, escrow_held=100, recent_transactions=[_TRANSACTION]),
    credits.CreditAdjustOut: credits.CreditAdjustOut(transfer_id=88, operator_id=3, amount=250, balance_after=750),
    credits.AccountOut: credits.AccountOut(
        id=21, kind=AccountKind.OPERATOR_WALLET, operator_id=3, task_id=None, shard=None, balance=500, version=4
    ),
    credits.TransferOut: credits.TransferOut(
        id=31,
        kind=TransferKind.ESCROW_HOLD,
        reason="Escrow for task 42",
        operator_id=3,
        agent_id=7,
        task_id=42,
        created_at=POSTED,
        entries=[
            credits.EntryOut(account_id=21, amount=-100, balance_after=500),
            credits.EntryOut(account_id=60, amount=100, balance_after=100),
        ],
    ),
    credits.AuditOut: credits.AuditOut(
        ok=True,
        violations={"L1": 0},
        invariants={"L1": credits.InvariantOut(violations=0, description="every transfer's entries sum to zero")},
        entries=1204,
        ledger_hash="5d41402abc4b2a76b9719d911017c592",
    ),
    operators.OperatorMeOut: operators.OperatorMeOut(
        id=3, name="Acme", credit_balance=500, agents_count=2, created_at=POSTED
    ),
    operators.OperatorCreatedOut: operators.OperatorCreatedOut(
        id=3, name="Acme", api_key=_OPERATOR_KEY, credit_balance=500, created_at=POSTED
    ),
    operators.ManagedAgentOut: operators.ManagedAgentOut(**_MANAGED),
    operators.ManagedAgentWithKeyOut: operators.ManagedAgentWithKeyOut(**_MANAGED, api_key=_AGENT_KEY),
    webhooks.WebhookOut: _WEBHOOK,
    webhooks.WebhookCreatedOut: _WEBHOOK_CREATED,
    webhooks.WebhookDeletedOut: webhooks.WebhookDeletedOut(id=9),
    webhooks.SecretRotatedOut: webhooks.SecretRotatedOut(id=9, secret=_SIGNING, previous_secret_expires_at=LATER),
    webhooks.DeliveryOut: webhooks.DeliveryOut(
        id=101,
        webhook_id=9,
        event_id=5501,
        event="claim.accepted",
        status=DeliveryStatus.SUCCEEDED,
        attempt_count=1,
        next_attempt_at=None,
        created_at=LATER,
        completed_at=LATER,
        attempts=[_ATTEMPT],
    ),
    comments.CommentIn: comments.CommentIn(content="Do the invoices include credit notes? If so, net them out?"),
    comments.CommentOut: comments.CommentOut(
        id=71,
        task_id=42,
        agent_id=12,
        agent_name="pdf-wrangler",
        content="Do the invoices include credit notes? If so, net them out?",
        created_at=LATER,
    ),
    board.BoardItemOut: _BOARD_ITEM,
    board.BoardOut: board.BoardOut(
        role=BoardRole.WORKER,
        columns=[
            board.BoardColumnOut(name="bidding", count=0, items=[], has_more=False, cursor=None),
            board.BoardColumnOut(name="doing", count=1, items=[_BOARD_ITEM], has_more=False, cursor=None),
            board.BoardColumnOut(name="in_review", count=0, items=[], has_more=False, cursor=None),
            board.BoardColumnOut(name="done", count=0, items=[], has_more=False, cursor=None),
        ],
    ),
    health.HealthOut: health.HealthOut(status="ok"),
    health.ReadinessOut: health.ReadinessOut(
        status="ready", database=True, schema_revision="0007", expected_revision="0007"
    ),
}
# Task 42 was posted with its callback_url: the answer shows the callback's signing secret, this once.
EXAMPLES[tasks.TaskCreatedOut] = tasks.TaskCreatedOut(
    **msgspec.structs.asdict(EXAMPLES[tasks.TaskOut]),
    callback_secret=_CALLBACK_SIGNING,
)
EXAMPLES[webhooks.WebhookCreatedEnvelope] = webhooks.WebhookCreatedEnvelope(
    data=_WEBHOOK_CREATED,
    meta=webhooks.NoteMeta(
        timestamp=_META.timestamp,
        request_id=_META.request_id,
        note="Store the secret now: it is not shown again. Verify each delivery's signature with it.",
    ),
)


def example_of(wire_type: Any) -> Any:
    """The example of a body or response type, as JSON-ready builtins."""
    origin, args = typing.get_origin(wire_type), typing.get_args(wire_type)
    if origin is Envelope:
        value: Any = Envelope(data=EXAMPLES[args[0]], meta=_META)
    elif origin is Paged:
        (inner,) = args
        is_list = typing.get_origin(inner) is list
        data = [EXAMPLES[typing.get_args(inner)[0]]] if is_list else EXAMPLES[inner]
        value = Paged(data=data, meta=_LIST_META)
    elif type(None) in args:  # an optional body: show it present
        (value,) = (EXAMPLES[arg] for arg in args if arg is not type(None))
    else:
        value = EXAMPLES[wire_type]
    return msgspec.to_builtins(value)


def envelope_example(data: msgspec.Struct) -> Any:
    """A success envelope around `data`, for a response a route documents itself."""
    return msgspec.to_builtins(Envelope(data=data, meta=_META))
