"""Deliverables: submit, list, accept (settles the escrow), request a revision."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from app.repo import deliverables as deliverable_rows
from app.repo import ledger
from app.repo import tasks as task_rows
from app.services import task_clock
from app.services.uow import UnitOfWork
from domain import deliverables as work
from domain.errors import Forbidden
from domain.tasks import Actor, DeliverableRecord, Settlement
from domain.transitions import LockedTask


@dataclass(frozen=True, slots=True)
class Delivered:
    deliverable: DeliverableRecord
    is_late: bool


@dataclass(frozen=True, slots=True)
class Accepted:
    task_id: int
    deliverable_id: int
    worker_agent_id: int
    settlement: Settlement


async def submit(uow: UnitOfWork, actor: Actor, task_id: int, content: str) -> Delivered:
    async with uow:
        lock = partial(task_rows.lock_for_delivery, uow.connection, task_id, actor.agent_id)
        locked = await task_clock.locked(uow, task_id, lock, lambda held: held.state.task)
        delivery = work.deliver(locked.state, actor, content)
        record = deliverable_rows.new_record(delivery.deliverable, locked.context)
        delivered = Delivered(record, delivery.is_late(record.submitted_at))
        async with uow.committing(delivered):
            await deliverable_rows.insert(uow.connection, delivery.deliverable, locked.context)
            await task_rows.update(uow.connection, delivery.update)
            await uow.publish(delivery.events(record.id))
    return delivered


async def list_for_task(
    uow: UnitOfWork, actor: Actor, task_id: int, *, after_id: int, limit: int
) -> list[DeliverableRecord]:
    """Delivered work is visible to the poster's agents and to the agents who delivered it, no one else."""
    task = await task_clock.current(uow, task_id)
    records = await deliverable_rows.for_task(await uow.reader(), task_id, after_id=after_id, limit=limit)
    if task.poster_operator_id == actor.operator_id:
        return records
    if task.claimed_by_agent_id == actor.agent_id or any(r.agent_id == actor.agent_id for r in records):
        return [r for r in records if r.agent_id == actor.agent_id]
    raise Forbidden(
        "Only the poster and the task's worker can read its deliverables",
        "Read deliverables of tasks you posted or delivered.",
    )


async def _lock_for_review(uow: UnitOfWork, task_id: int, deliverable_id: int) -> LockedTask:
    lock = partial(task_rows.lock_for_review, uow.connection, task_id, deliverable_id)
    return await task_clock.locked(uow, task_id, lock, lambda held: held.task)


async def accept(uow: UnitOfWork, actor: Actor, task_id: int, deliverable_id: int) -> Accepted:
    """Accept the work: one transfer empties the escrow to the worker, the platform fee and the poster's change."""
    async with uow:
        locked = await _lock_for_review(uow, task_id, deliverable_id)
        acceptance = work.accept_work(locked, actor, deliverable_id)
        accepted = Accepted(task_id, deliverable_id, acceptance.worker_agent_id, acceptance.settlement)
        async with uow.committing(accepted):
            await deliverable_rows.update(uow.connection, acceptance.deliverable)
            await task_rows.complete_work(uow.connection, task_id, acceptance.worker_agent_id)
            await ledger.send(uow.connection, acceptance.transfer)
            await uow.publish(acceptance.events)
    return accepted


async def request_revision(uow: UnitOfWork, actor: Actor, task_id: int, deliverable_id: int, notes: str) -> int:
    """Send the work back: the deliverable is marked, the task returns to in_progress. Returns the worker."""
    async with uow:
        locked = await _lock_for_review(uow, task_id, deliverable_id)
        revision = work.request_revision(locked, actor, deliverable_id, notes)
        async with uow.committing(revision.worker_agent_id):
            await deliverable_rows.update(uow.connection, revision.deliverable)
            await task_rows.update(uow.connection, revision.task)
            await uow.publish(revision.events)
    return revision.worker_agent_id
