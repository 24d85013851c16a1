"""/api/v1/tasks/{task_id}/claims and /api/v1/tasks/bulk/claims: bids (TaskHive calls them claims)."""

from __future__ import annotations

from litestar import Controller
from litestar.di import NamedDependency
from litestar.params import JSONBody

from app.http.envelope import Envelope, Paged, ok
from app.http.handlers import get, post
from app.http.pagination import DEFAULT_LIMIT, id_page
from app.http.params import ClaimId, Cursor, Limit, TaskId, parse_id
from app.http.respond import respond
from app.http.routes.docs import errors
from app.http.schemas.tasks import (
    BidAcceptedOut,
    BidIn,
    BidWithdrawnOut,
    BulkBidsIn,
    BulkErrorOut,
    BulkItemOut,
    BulkOut,
    BulkSummaryOut,
    ClaimOut,
)
from app.http.security import agent_only
from app.services import bids
from app.services.bids import BidRequest, BulkResult
from app.services.uow import UnitOfWork
from domain.error_codes import (
    CLAIM_NOT_FOUND,
    DUPLICATE_CLAIM,
    FORBIDDEN,
    INVALID_CREDITS,
    INVALID_STATUS,
    SELF_CLAIM,
    TASK_NOT_FOUND,
    TASK_NOT_OPEN,
)
from domain.tasks import Actor


def _bulk_item(outcome: BulkResult) -> BulkItemOut:
    """One bid's result: its claim, or the error it failed with."""
    if outcome.claim is not None:
        return BulkItemOut(task_id=outcome.task_id, ok=True, claim_id=outcome.claim.id)
    error = outcome.error
    if error is None:
        raise RuntimeError(f"the bid on task {outcome.task_id} has neither a claim nor an error")
    return BulkItemOut(task_id=outcome.task_id, ok=False, error=BulkErrorOut(code=error.code, message=error.message))


def _bulk_answer(outcomes: list[BulkResult]) -> Envelope[BulkOut]:
    items = [_bulk_item(o) for o in outcomes]
    succeeded = sum(item.ok for item in items)
    summary = BulkSummaryOut(succeeded=succeeded, failed=len(items) - succeeded, total=len(items))
    return ok(BulkOut(results=items, summary=summary))


class ClaimsController(Controller):
    path = "/api/v1/tasks"
    tags = ["claims"]
    guards = [agent_only]
    security = [{"agentKey": []}]

    @post(
        "/{task_id:str}/claims",
        operation_id="createClaim",
        status_code=201,
        responses=errors(TASK_NOT_FOUND, SELF_CLAIM, TASK_NOT_OPEN, INVALID_CREDITS, DUPLICATE_CLAIM),
    )
    async def place(
        self,
        task_id: TaskId,
        data: JSONBody[BidIn],
        actor: NamedDependency[Actor],
        uow: NamedDependency[UnitOfWork],
    ) -> Envelope[ClaimOut]:
        """Bid on an open task (1..budget credits), or take an instant task at its budget (the claim is accepted)."""
        bid = BidRequest(parse_id(task_id, "Task"), data.proposed_credits, data.message)
        return await respond(uow, bids.place_bid(uow, actor, bid), lambda claim: ok(ClaimOut.of(claim)))

    @get("/{task_id:str}/claims", operation_id="listClaims", responses=errors(TASK_NOT_FOUND))
    async def list_bids(
        self,
        task_id: TaskId,
        uow: NamedDependency[UnitOfWork],
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> Paged[list[ClaimOut]]:
        """A task's bids, oldest first."""
        task = parse_id(task_id, "Task")
        return await id_page(
            cursor, limit, lambda last, n: bids.list_bids(uow, task, after_id=last or 0, limit=n), ClaimOut.of
        )

    @post(
        "/{task_id:str}/claims/{claim_id:str}/accept",
        operation_id="acceptClaim",
        status_code=200,
        responses=errors(TASK_NOT_FOUND, FORBIDDEN, TASK_NOT_OPEN, CLAIM_NOT_FOUND, INVALID_STATUS),
    )
    async def accept(
        self,
        task_id: TaskId,
        claim_id: ClaimId,
        actor: NamedDependency[Actor],
        uow: NamedDependency[UnitOfWork],
    ) -> Envelope[BidAcceptedOut]:
        """Accept a bid on a task you posted: the task is assigned at the bid's price, other bids are rejected."""
        return await respond(
            uow,
            bids.accept_bid(uow, actor, parse_id(task_id, "Task"), parse_id(claim_id, "Claim")),
            lambda accepted: ok(
                BidAcceptedOut(task_id=accepted.task_id, claim_id=accepted.claim_id, agent_id=accepted.agent_id)
            ),
        )

    @post(
        "/{task_id:str}/claims/{claim_id:str}/withdraw",
        operation_id="withdrawClaim",
        status_code=200,
        responses=errors(TASK_NOT_FOUND, CLAIM_NOT_FOUND, FORBIDDEN, INVALID_STATUS),
    )
    async def withdraw(
        self,
        task_id: TaskId,
        claim_id: ClaimId,
        actor: NamedDependency[Actor],
        uow: NamedDependency[UnitOfWork],
    ) -> Envelope[BidWithdrawnOut]:
        """Withdraw your pending bid; you may bid again later."""
        task, claim = parse_id(task_id, "Task"), parse_id(claim_id, "Claim")
        return await respond(
            uow, bids.withdraw_bid(uow, actor, task, claim), lambda _: ok(BidWithdrawnOut(claim_id=claim, task_id=task))
        )

    @post("/bulk/claims", operation_id="bulkClaims", status_code=200)
    async def bulk(
        self, data: JSONBody[BulkBidsIn], actor: NamedDependency[Actor], uow: NamedDependency[UnitOfWork]
    ) -> Envelope[BulkOut]:
        """Up to 10 bids, each processed on its own; always 200 with a result per bid."""
        requests = [BidRequest(item.task_id, item.proposed_credits, item.message) for item in data.claims]
        return await respond(uow, bids.place_bids(uow, actor, requests), _bulk_answer)
