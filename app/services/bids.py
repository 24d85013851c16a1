"""Bids (TaskHive's claims): place, list, accept, withdraw, bulk."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from psycopg import errors

from app.repo import claims as claim_rows
from app.repo import tasks as task_rows
from app.services import task_clock
from app.services.uow import UnitOfWork
from domain import bids as bidding
from domain.bids import BidPlacement, LockedBid
from domain.errors import Conflict, DomainError
from domain.events import Event
from domain.tasks import Actor, ClaimRecord


@dataclass(frozen=True, slots=True)
class BidAccepted:
    task_id: int
    claim_id: int
    agent_id: int


@dataclass(frozen=True, slots=True)
class BidRequest:
    task_id: int
    proposed_credits: int | None  # None: an instant task's claim, at its budget
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


async def _lock(uow: UnitOfWork, actor: Actor, task_id: int) -> task_rows.BidLock:
    """The task locked for the agent's bid, with what time made due on it written first (and kept)."""
    lock = partial(task_rows.lock_for_bid, uow.connection, task_id, actor.agent_id)
    return await task_clock.locked(uow, task_id, lock, lambda held: held.state.task)


def _decide(locked: task_rows.BidLock, actor: Actor, bid: BidRequest) -> _Decided:
    placement = bidding.place_bid(
        locked.state,
        actor,
        proposed_credits=bid.proposed_credits,
        message=bid.message,
    )
    return _Decided(
        placement, locked.context, claim_rows.new_record(placement.claim, locked.context, locked.state.task)
    )


async def _write(uow: UnitOfWork, decided: _Decided) -> None:
    """The bid, and for an instant task's claim the task taken by it (the claim first: the task names it)."""
    await claim_rows.insert(uow.connection, decided.placement.claim, decided.context)
    taken = decided.placement.update(decided.record.id)
    if taken is not None:
        await task_rows.update(uow.connection, taken)


async def place_bid(uow: UnitOfWork, actor: Actor, bid: BidRequest) -> ClaimRecord:
    """A bid, or on an instant task a claim that takes the task at its budget."""
    async with uow:
        decided = _decide(await _lock(uow, actor, bid.task_id), actor, bid)
        # The bid goes out with the commit: the task's lock, held since the checks, keeps a second pending bid of the
        # agent out, and a second claim on an instant task (whoever locks next finds it claimed); the partial unique
        # indexes back both (a violation here would be a bug).
        async with uow.committing(decided.record):
            await _write(uow, decided)
            await uow.publish(decided.placement.events(decided.record.id))
    return decided.record


async def place_bids(uow: UnitOfWork, actor: Actor, bids: list[BidRequest]) -> list[BulkResult]:
    """Each bid on its own (a savepoint each): one failing leaves the others standing. Each is inserted at once,
    so that a second bid on the same task in the same request sees the first. What time made due on a task is
    written before its bid's savepoint, so a refused bid does not undo it."""
    results: list[BulkResult] = []
    events: list[Event] = []  # of the bids placed, published with the commit
    async with uow:
        for bid in bids:
            try:
                locked = await _lock(uow, actor, bid.task_id)
                async with uow.savepoint():
                    decided = _decide(locked, actor, bid)
                    try:
                        await _write(uow, decided)
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
    """The task's bids, once the task is known to exist for the reader (with what time made due on it written)."""
    await task_clock.current(uow, task_id)
    return await claim_rows.for_task(await uow.reader(), task_id, uow.viewer, after_id=after_id, limit=limit)


async def _lock_with_claim(uow: UnitOfWork, task_id: int, claim_id: int) -> LockedBid:
    lock = partial(task_rows.lock_with_claim, uow.connection, task_id, claim_id)
    return await task_clock.locked(uow, task_id, lock, lambda held: held.task)


async def accept_bid(uow: UnitOfWork, actor: Actor, task_id: int, claim_id: int) -> BidAccepted:
    """The poster picks a bid: the task is assigned at that price and every other pending bid is rejected."""
    async with uow:
        locked = await _lock_with_claim(uow, task_id, claim_id)
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
        locked = await _lock_with_claim(uow, task_id, claim_id)
        withdrawal = bidding.withdraw_bid(locked, actor, claim_id)
        async with uow.committing(None):
            await claim_rows.set_status(uow.connection, withdrawal.claim_id, withdrawal.status)
            await uow.publish(withdrawal.events)


async def agent_bids(uow: UnitOfWork, agent_id: int, *, before_id: int | None, limit: int) -> list[ClaimRecord]:
    return await claim_rows.for_agent(await uow.reader(), agent_id, before_id=before_id, limit=limit)
