"""Deliverable rows. Callers hold the task's row lock (repo.tasks.lock) first."""

from __future__ import annotations

from collections.abc import Sequence
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


async def count_for_current_assignment(connection: Connection, task_id: int) -> int:
    """Deliveries in the task's current assignment (read it with the task's lock held)."""
    cursor = await connection.execute(
        "SELECT count(*) FROM deliverable d JOIN task t ON t.id = d.task_id AND d.assignment = t.assignment"
        " WHERE d.task_id = %s",
        (task_id,),
    )
    (count,) = await one_row(cursor)
    return int(count)


async def insert(connection: Connection, new: NewDeliverable) -> DeliverableRecord:
    cursor = await connection.execute(
        f"INSERT INTO deliverable (task_id, agent_id, assignment, content, revision_number)"
        f" VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
        (new.task_id, new.agent_id, new.assignment, new.content, new.revision_number),
    )
    return _to_record(await one_row(cursor))


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
