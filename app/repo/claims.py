"""Bid rows. Callers hold the task's row lock (repo.tasks.lock) before changing any bid of that task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.repo.connections import Connection, one_row
from domain.bids import ClaimFacts, NewClaim
from domain.tasks import ClaimRecord, ClaimStatus, TaskStatus
from domain.transitions import BidRejection

_SELECT = """
SELECT c.id, c.task_id, c.agent_id, a.name, c.proposed_credits, c.message, c.status, c.created_at, t.title, t.status
  FROM claim c JOIN agent a ON a.id = c.agent_id JOIN task t ON t.id = c.task_id
"""


def _to_record(row: Sequence[Any]) -> ClaimRecord:
    return ClaimRecord(
        id=row[0],
        task_id=row[1],
        agent_id=row[2],
        agent_name=row[3],
        proposed_credits=row[4],
        message=row[5],
        status=ClaimStatus(row[6]),
        created_at=row[7],
        task_title=row[8],
        task_status=TaskStatus(row[9]),
    )


async def find(connection: Connection, claim_id: int) -> ClaimFacts | None:
    """What the rules need of a bid (read with its task's lock held)."""
    cursor = await connection.execute(
        "SELECT task_id, agent_id, status, proposed_credits FROM claim WHERE id = %s", (claim_id,)
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    return ClaimFacts(id=claim_id, task_id=row[0], agent_id=row[1], status=ClaimStatus(row[2]), proposed_credits=row[3])


async def has_pending(connection: Connection, task_id: int, agent_id: int) -> bool:
    cursor = await connection.execute(
        "SELECT EXISTS (SELECT 1 FROM claim WHERE task_id = %s AND agent_id = %s AND status = 'pending')",
        (task_id, agent_id),
    )
    (exists,) = await one_row(cursor)
    return bool(exists)


async def insert(connection: Connection, claim: NewClaim) -> ClaimRecord:
    cursor = await connection.execute(
        """
        WITH created AS (
            INSERT INTO claim (task_id, agent_id, operator_id, proposed_credits, message)
            VALUES (%s, %s, %s, %s, %s) RETURNING *
        )
        SELECT c.id, c.task_id, c.agent_id, a.name, c.proposed_credits, c.message, c.status, c.created_at,
               t.title, t.status
          FROM created c JOIN agent a ON a.id = c.agent_id JOIN task t ON t.id = c.task_id
        """,
        (claim.task_id, claim.agent_id, claim.operator_id, claim.proposed_credits, claim.message),
    )
    return _to_record(await one_row(cursor))


# Each rejected bid's agent hears `claim.rejected` (the outbox), written by the statement that rejects it, so the
# event names exactly the bids this transaction rejected.
_REJECTION_EVENTS = """
rejection_events AS (
    INSERT INTO event (type, agent_id, task_id, data)
    SELECT 'claim.rejected', r.agent_id, r.task_id,
           jsonb_build_object('task_id', r.task_id, 'claim_id', r.id, 'reason', %(reason)s::text)
      FROM changed r WHERE r.status = 'rejected'
)"""


async def accept(connection: Connection, task_id: int, claim_id: int, *, others_rejected_because: str) -> None:
    """Accept one bid and reject the task's other pending bids (each rejected bidder hears of it). Nothing is read
    back, so it can go out with the commit: every CTE runs whether or not the final SELECT reads it."""
    await connection.execute(
        f"""
        WITH changed AS (
            UPDATE claim SET status = CASE WHEN id = %(claim)s THEN 'accepted' ELSE 'rejected' END,
                             updated_at = statement_timestamp()
             WHERE task_id = %(task)s AND status = 'pending'
            RETURNING id, task_id, agent_id, status
        ), {_REJECTION_EVENTS}
        SELECT count(*) FROM changed
        """,
        {"claim": claim_id, "task": task_id, "reason": others_rejected_because},
    )


async def set_status(connection: Connection, claim_id: int, status: ClaimStatus) -> None:
    await connection.execute(
        "UPDATE claim SET status = %s, updated_at = statement_timestamp() WHERE id = %s", (status.value, claim_id)
    )


async def reject(connection: Connection, task_id: int, rejection: BidRejection) -> list[int]:
    """Reject the task's bids in the rejection's statuses (cancel, rollback); returns the bidders' agent ids."""
    cursor = await connection.execute(
        f"""
        WITH changed AS (
            UPDATE claim SET status = 'rejected', updated_at = statement_timestamp()
             WHERE task_id = %(task)s AND status = ANY (%(statuses)s)
            RETURNING id, task_id, agent_id, status
        ), {_REJECTION_EVENTS}
        SELECT agent_id FROM changed
        """,
        {"task": task_id, "statuses": [status.value for status in rejection.statuses], "reason": rejection.reason},
    )
    return [agent_id for (agent_id,) in await cursor.fetchall()]


async def get(connection: Connection, claim_id: int) -> ClaimRecord:
    cursor = await connection.execute(f"{_SELECT} WHERE c.id = %s", (claim_id,))
    return _to_record(await one_row(cursor))


async def for_task(connection: Connection, task_id: int, *, after_id: int, limit: int) -> list[ClaimRecord]:
    cursor = await connection.execute(
        f"{_SELECT} WHERE c.task_id = %s AND c.id > %s ORDER BY c.id LIMIT %s", (task_id, after_id, limit)
    )
    return [_to_record(row) for row in await cursor.fetchall()]


async def for_agent(connection: Connection, agent_id: int, *, before_id: int | None, limit: int) -> list[ClaimRecord]:
    cursor = await connection.execute(
        f"{_SELECT} WHERE c.agent_id = %s AND (%s::bigint IS NULL OR c.id < %s) ORDER BY c.id DESC LIMIT %s",
        (agent_id, before_id, before_id, limit),
    )
    return [_to_record(row) for row in await cursor.fetchall()]
