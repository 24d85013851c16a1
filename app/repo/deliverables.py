"""Deliverable rows. Callers hold the task's row lock (repo.tasks.lock) first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.repo.connections import Connection, one_row
from app.repo.rows import Column, row_type
from domain.deliverables import DeliverableUpdate, NewDeliverable
from domain.tasks import DeliverableRecord, DeliverableStatus

DELIVERABLE_RECORD = row_type(
    DeliverableRecord,
    id="d.id",
    task_id="d.task_id",
    agent_id="d.agent_id",
    content="d.content",
    status=Column("d.status", DeliverableStatus),
    revision_notes="d.revision_notes",
    revision_number="d.revision_number",
    submitted_at="d.submitted_at",
)
_SELECT = f"SELECT {DELIVERABLE_RECORD.columns} FROM deliverable d"


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    """What delivering needs besides the task (read with the task's lock held): how many deliveries its current
    assignment has had, and the new deliverable's id (drawn from its sequence) and time (the transaction's, the
    column's default), so that its record is known before the insert and the insert can go out with the commit."""

    deliveries_this_assignment: int
    deliverable_id: int
    submitted_at: datetime
    lease_ended_at: datetime | None  # domain.deliverables.DeliveryState's


_DELIVERY_CONTEXT = row_type(
    DeliveryContext,
    deliveries_this_assignment="""(SELECT count(*) FROM deliverable d
                                     JOIN task t ON t.id = d.task_id AND d.assignment = t.assignment
                                    WHERE d.task_id = %(task)s)""",
    deliverable_id="nextval('deliverable_id_seq')",
    submitted_at="now()",
    # Only for an agent the task is not assigned to (the join finds no task row otherwise, so no event is read): the
    # `claim.lease_expired` that ended the agent's assignment, if the task's latest assignment was the agent's and
    # ended so. The event is what records why an assignment ended; kept for AGORA_EVENTS_RETENTION_DAYS, after which
    # a late delivery is refused as any delivery by an agent the task is not assigned to.
    lease_ended_at="""(SELECT (e.data->>'lease_expires_at')::timestamptz
                         FROM task t JOIN event e ON e.agent_id = %(agent)s AND e.task_id = t.id
                                                 AND e.type = 'claim.lease_expired'
                                                 AND e.data->'assignment' = to_jsonb(t.assignment)
                                                 AND e.data->'agent_id' = to_jsonb(%(agent)s::bigint)
                        WHERE t.id = %(task)s AND t.claimed_by_agent_id IS DISTINCT FROM %(agent)s
                        LIMIT 1)""",
)


async def delivery_context(connection: Connection, task_id: int, agent_id: int) -> DeliveryContext:
    cursor = await connection.execute(f"SELECT {_DELIVERY_CONTEXT.columns}", {"task": task_id, "agent": agent_id})
    return _DELIVERY_CONTEXT.read(await one_row(cursor), 0)


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
    cursor = await connection.execute(f"{_SELECT} WHERE d.id = %s", (deliverable_id,))
    row = await cursor.fetchone()
    return DELIVERABLE_RECORD.read(row, 0) if row else None


async def update(connection: Connection, change: DeliverableUpdate) -> None:
    """The deliverable's new status, and its revision notes unless they are None."""
    await connection.execute(
        "UPDATE deliverable SET status = %s, revision_notes = coalesce(%s, revision_notes),"
        " updated_at = statement_timestamp() WHERE id = %s",
        (change.status.value, change.revision_notes, change.deliverable_id),
    )


async def for_task(connection: Connection, task_id: int, *, after_id: int, limit: int) -> list[DeliverableRecord]:
    cursor = await connection.execute(
        f"{_SELECT} WHERE d.task_id = %s AND d.id > %s ORDER BY d.id LIMIT %s", (task_id, after_id, limit)
    )
    return DELIVERABLE_RECORD.read_all(await cursor.fetchall())
