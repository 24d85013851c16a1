"""Deliverables: submit, list, accept (settles the escrow), request a revision."""

from __future__ import annotations

from dataclasses import dataclass

from app.repo import deliverables as deliverable_rows
from app.repo import ledger
from app.repo import tasks as task_rows
from app.services.uow import UnitOfWork
from domain import events as announce
from domain import tasks as rules
from domain.errors import Forbidden
from domain.ledger import Posting, TransferKind, balanced
from domain.tasks import Actor, DeliverableRecord, DeliverableStatus, Settlement, TaskStatus, task_not_found


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
        task = await task_rows.lock(uow.connection, task_id)
        if task is None:
            raise task_not_found(task_id)
        so_far = await deliverable_rows.count_for_assignment(uow.connection, task_id, task.assignment)
        revision_number = rules.check_deliver(task, actor, so_far)
        record = await deliverable_rows.insert(
            uow.connection,
            task_id=task_id,
            agent_id=actor.agent_id,
            assignment=task.assignment,
            content=content,
            revision_number=revision_number,
        )
        async with uow.batch():
            await task_rows.set_status(uow.connection, task_id, TaskStatus.DELIVERED)
            await uow.publish(
                announce.work_delivered(
                    task, deliverable_id=record.id, agent_id=actor.agent_id, revision_number=revision_number
                )
            )
        delivered = Delivered(record, task.deadline is not None and record.submitted_at > task.deadline)
        await uow.commit(delivered)
    return delivered


async def list_for_task(
    uow: UnitOfWork, actor: Actor, task_id: int, *, after_id: int, limit: int
) -> list[DeliverableRecord]:
    """Delivered work is visible to the poster's agents and to the agents who delivered it, no one else."""
    connection = await uow.reader()
    task = await task_rows.get(connection, task_id)
    if task is None:
        raise task_not_found(task_id)
    records = await deliverable_rows.for_task(connection, task_id, after_id=after_id, limit=limit)
    if task.poster_operator_id == actor.operator_id:
        return records
    if task.claimed_by_agent_id == actor.agent_id or any(r.agent_id == actor.agent_id for r in records):
        return [r for r in records if r.agent_id == actor.agent_id]
    raise Forbidden(
        "Only the poster and the task's worker can read its deliverables",
        "Read deliverables of tasks you posted or delivered.",
    )


async def accept(uow: UnitOfWork, actor: Actor, task_id: int, deliverable_id: int) -> Accepted:
    """Accept the work: one transfer empties the escrow to the worker, the platform fee and the poster's change."""
    async with uow:
        context = await task_rows.lock_for_review(uow.connection, task_id, deliverable_id)
        if context is None:
            raise task_not_found(task_id)
        task = context.task
        rules.check_review(task, actor, context.deliverable_task_id, context.deliverable_status, deliverable_id)
        worker, price, worker_wallet = task.claimed_by_agent_id, task.price_credits, context.worker_wallet_id
        if worker is None or price is None or worker_wallet is None:  # a delivered task has all three (CHECKs)
            raise RuntimeError(f"delivered task {task_id} lacks its worker, price or the worker's wallet")
        split = rules.settle(task.budget_credits, price)
        transfer = balanced(
            TransferKind.SETTLEMENT,
            f"Settlement of task {task_id}",
            (
                Posting(context.escrow_account_id, -task.budget_credits),
                Posting(worker_wallet, split.worker),
                Posting(context.revenue_account_id, split.fee),
                Posting(context.poster_wallet_id, split.refund),
            ),
            task_id=task_id,
            agent_id=worker,
        )
        async with uow.batch():
            await deliverable_rows.set_status(uow.connection, deliverable_id, DeliverableStatus.ACCEPTED)
            await task_rows.complete_work(uow.connection, task_id, worker)
            await ledger.send(uow.connection, transfer)
            await uow.publish(
                announce.work_accepted(
                    task, deliverable_id=deliverable_id, credits_paid=split.worker, platform_fee=split.fee
                )
            )
        accepted = Accepted(task_id, deliverable_id, worker, split)
        await uow.commit(accepted)
    return accepted


async def request_revision(uow: UnitOfWork, actor: Actor, task_id: int, deliverable_id: int, notes: str) -> int:
    """Send the work back: the deliverable is marked, the task returns to in_progress. Returns the worker."""
    async with uow:
        context = await task_rows.lock_for_review(uow.connection, task_id, deliverable_id)
        if context is None:
            raise task_not_found(task_id)
        task = context.task
        rules.check_review(task, actor, context.deliverable_task_id, context.deliverable_status, deliverable_id)
        rules.check_revision_round(task, context.deliverable_revision or 0)
        worker = task.claimed_by_agent_id
        if worker is None:  # a delivered task has a worker (a CHECK)
            raise RuntimeError(f"delivered task {task_id} has no worker")
        async with uow.batch():
            await deliverable_rows.set_status(
                uow.connection, deliverable_id, DeliverableStatus.REVISION_REQUESTED, revision_notes=notes
            )
            await task_rows.set_status(uow.connection, task_id, TaskStatus.IN_PROGRESS)
            await uow.publish(announce.revision_requested(task, deliverable_id=deliverable_id, notes=notes))
        await uow.commit(worker)
    return worker
