"""Deliverable rows. Callers hold the task's row lock (repo.tasks.lock) first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.repo.connections import Connection, one_row
from domain.deliverables import DeliverableUpdate, NewDeliverable
from domain.tasks import DeliverableRecord, DeliverableStatus

_COLUMNS = "id, task_id, agent_id, content, status, revision_notes, revision_number, submitted_at"


def _to_record(row: Sequence[Any]) -> DeliverableRecord:
    return DeliverableRecord(
        id=row[0],
        task_id=row[1],
        agent_id=row[2],
        content=row[3],
        status=DeliverableStatus(row[4]),
        revision_notes=row[5],
        revision_number=row[6],
        submitted_at=row[7],
    )


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    """What delivering needs besides the task (read with the task's lock held): how many deliveries its current
    assignment has had, and the new deliverable's id (drawn from its sequence) and time (the transaction's, the
    column's default), so that its record is known before the insert and the insert can go out with the commit."""

    deliveries_this_assignment: int
    deliverable_id: int
    submitted_at: datetime


async def delivery_context(connection: Connection, task_id: int) -> DeliveryContext:
    cursor = await connection.execute(
        """SELECT (SELECT count(*) FROM deliverable d JOIN task t ON t.id = d.task_id AND d.assignment = t.assignment
                    WHERE d.task_id = %s),
                  nextval('deliverable_id_seq'), now()""",
        (task_id,),
    )
    so_far, deliverable_id, submitted_at = await one_row(cursor)
    return DeliveryContext(int(so_far), deliverable_id, submitted_at)


def new_record(new: NewDeliverable, context: DeliveryContext) -> DeliverableRecord:
    """The deliverable as `insert` writes it."""
    return DeliverableRecord(
        id=context.deliverable_id,
        task_id=new.task_id,
        agent_id=new.agent_id,
        content=new.content,
        status=DeliverableStatus.SUBMITTED,
        revision_notes=None,
        revision_number=new.revision_number,
        submitted_at=context.submitted_at,
    )


async def insert(connection: Connection, new: NewDeliverable, context: DeliveryContext) -> None:
    """Insert the deliverable with the id and time its context drew (nothing is read back)."""
    await connection.execute(
        "INSERT INTO deliverable (id, task_id, agent_id, assignment, content, revision_number, submitted_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            context.deliverable_id,
            new.task_id,
            new.agent_id,
            new.assignment,
            new.content,
            new.revision_number,
            context.submitted_at,
        ),
    )


async def find(connection: Connection, deliverable_id: int) -> DeliverableRecord | None:
    cursor = await connection.execute(f"SELECT {_COLUMNS} FROM deliverable WHERE id = %s", (deliverable_id,))
    row = await cursor.fetchone()
    return _to_record(row) if row else None


async def update(connection: Connection, change: DeliverableUpdate) -> None:
    """The deliverable's new status, and its revision notes unless they are None."""
    await connection.execute(
        "UPDATE deliverable SET status = %s, revision_notes = coalesce(%s, revision_notes),"
        " updated_at = statement_timestamp() WHERE id = %s",
        (change.status.value, change.revision_notes, change.deliverable_id),
    )


async def for_task(connection: Connection, task_id: int, *, after_id: int, limit: int) -> list[DeliverableRecord]:
    cursor = await connection.execute(
        f"SELECT {_COLUMNS} FROM deliverable WHERE task_id = %s AND id > %s ORDER BY id LIMIT %s",
        (task_id, after_id, limit),
    )
    return [_to_record(row) for row in await cursor.fetchall()]
