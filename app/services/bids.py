"""Bids (TaskHive's claims): place, list, accept, withdraw, bulk."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import errors

from app.repo import claims as claim_rows
from app.repo import tasks as task_rows
from app.services.uow import UnitOfWork
from domain import bids as bidding
from domain.bids import BidPlacement
from domain.errors import Conflict, DomainError
from domain.events import Event
from domain.tasks import Actor, ClaimRecord, task_not_found


@dataclass(frozen=True, slots=True)
class BidAccepted:
    task_id: int
    claim_id: int
    agent_id: int


@dataclass(frozen=True, slots=True)
class BidRequest:
    task_id: int
    proposed_credits: int
    message: str | None = None


@dataclass(frozen=True, slots=True)
class BulkResult:
    task_id: int
    claim: ClaimRecord | None = None
    error: DomainError | None = None


@dataclass(frozen=True, slots=True)
class _Decided:
    placement: BidPlacement
    context: claim_rows.BidContext
    record: ClaimRecord  # the bid as it will be inserted


async def _decide(uow: UnitOfWork, actor: Actor, bid: BidRequest) -> _Decided:
    locked = await task_rows.lock_for_bid(uow.connection, bid.task_id, actor.agent_id)
    if locked is None:
        raise task_not_found(bid.task_id)
    placement = bidding.place_bid(
        locked.state,
        actor,
        proposed_credits=bid.proposed_credits,
        message=bid.message,
    )
    return _Decided(
        placement, locked.context, claim_rows.new_record(placement.claim, locked.context, locked.state.task)
    )


async def place_bid(uow: UnitOfWork, actor: Actor, bid: BidRequest) -> ClaimRecord:
    async with uow:
        decided = await _decide(uow, actor, bid)
        # The bid goes out with the commit: the task's lock, held since the pending-bid check, keeps a second
        # pending bid of the agent out (the partial unique index backs it; a violation here would be a bug).
        async with uow.committing(decided.record):
            await claim_rows.insert(uow.connection, decided.placement.claim, decided.context)
            await uow.publish(decided.placement.events(decided.record.id))
    return decided.record


async def place_bids(uow: UnitOfWork, actor: Actor, bids: list[BidRequest]) -> list[BulkResult]:
    """Each bid on its own (a savepoint each): one failing leaves the others standing. Each is inserted at once,
    so that a second bid on the same task in the same request sees the first."""
    results: list[BulkResult] = []
    events: list[Event] = []  # of the bids placed, published with the commit
    async with uow:
        for bid in bids:
            try:
                async with uow.savepoint():
                    decided = await _decide(uow, actor, bid)
                    try:
                        await claim_rows.insert(uow.connection, decided.placement.claim, decided.context)
                    except errors.UniqueViolation:  # the partial unique index backs the check
                        raise Conflict(
                            "You already have a pending bid on this task",
                            "Withdraw it first, or wait for the poster's decision.",
                            code="DUPLICATE_CLAIM",
                        ) from None
            except DomainError as error:
                results.append(BulkResult(bid.task_id, error=error))
            else:
                results.append(BulkResult(bid.task_id, claim=decided.record))
                events.extend(decided.placement.events(decided.record.id))
        async with uow.committing(results):
            await uow.publish(events)
    return results


async def list_bids(uow: UnitOfWork, task_id: int, *, after_id: int, limit: int) -> list[ClaimRecord]:
    connection = await uow.reader()
    records = await claim_rows.for_task(connection, task_id, uow.viewer, after_id=after_id, limit=limit)
    if not records and await task_rows.get(connection, task_id, uow.viewer) is None:
        raise task_not_found(task_id)
    return records


async def accept_bid(uow: UnitOfWork, actor: Actor, task_id: int, claim_id: int) -> BidAccepted:
    """The poster picks a bid: the task is assigned at that price and every other pending bid is rejected."""
    async with uow:
        locked = await task_rows.lock_with_claim(uow.connection, task_id, claim_id)
        if locked is None:
            raise task_not_found(task_id)
        acceptance = bidding.accept_bid(locked, actor, claim_id)
        accepted = BidAccepted(task_id, claim_id, acceptance.assignment.agent_id)
        async with uow.committing(accepted):
            await task_rows.update(uow.connection, acceptance.task)
            await uow.publish(acceptance.events)
            await claim_rows.accept(
                uow.connection, task_id, claim_id, others_rejected_because=acceptance.others_rejected_because
            )
    return accepted


async def withdraw_bid(uow: UnitOfWork, actor: Actor, task_id: int, claim_id: int) -> None:
    async with uow:
        locked = await task_rows.lock_with_claim(uow.connection, task_id, claim_id)
        if locked is None:
            raise task_not_found(task_id)
        withdrawal = bidding.withdraw_bid(locked, actor, claim_id)
        async with uow.committing(None):
            await claim_rows.set_status(uow.connection, withdrawal.claim_id, withdrawal.status)
            await uow.publish(withdrawal.events)


async def agent_bids(uow: UnitOfWork, agent_id: int, *, before_id: int | None, limit: int) -> list[ClaimRecord]:
    return await claim_rows.for_agent(await uow.reader(), agent_id, before_id=before_id, limit=limit)
