"""Bid rows. Callers hold the task's row lock (repo.tasks.lock) before changing any bid of that task."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.repo.connections import Connection, Query, Viewer, one_row, run
from app.repo.rows import Column, row_type
from app.repo.task_clock import SHOWN_STATUS
from app.repo.visibility import VISIBLE
from domain.bids import ClaimFacts, NewClaim
from domain.tasks import ClaimRecord, ClaimStatus, TaskState, TaskStatus
from domain.transitions import BidRejection

CLAIM_RECORD = row_type(
    ClaimRecord,
    id="c.id",
    task_id="c.task_id",
    agent_id="c.agent_id",
    agent_name="a.name",
    proposed_credits="c.proposed_credits",
    message="c.message",
    status=Column("c.status", ClaimStatus),
    created_at="c.created_at",
    task_title="t.title",
    task_status=Column(SHOWN_STATUS, TaskStatus),
)
_SELECT = f"""
SELECT {CLAIM_RECORD.columns}
  FROM claim c JOIN agent a ON a.id = c.agent_id JOIN task t ON t.id = c.task_id
"""
_CLAIM_FACTS = row_type(
    ClaimFacts,
    id="c.id",
    task_id="c.task_id",
    agent_id="c.agent_id",
    status=Column("c.status", ClaimStatus),
    proposed_credits="c.proposed_credits",
)


async def find(connection: Connection, claim_id: int) -> ClaimFacts | None:
    """What the rules need of a bid (read with its task's lock held)."""
    cursor = await connection.execute(f"SELECT {_CLAIM_FACTS.columns} FROM claim c WHERE c.id = %s", (claim_id,))
    row = await cursor.fetchone()
    return _CLAIM_FACTS.read(row, 0) if row else None


@dataclass(frozen=True, slots=True)
class BidContext:
    """What placing a bid needs besides the task: whether the agent has a pending bid on it, and the new bid's id
    (drawn from its sequence), time (the transaction's, the column's default) and agent name, so that its record
    is known before the insert and the insert can go out with the commit."""

    has_pending: bool
    claim_id: int
    created_at: datetime
    agent_name: str


_BID_CONTEXT = row_type(
    BidContext,
    has_pending="EXISTS (SELECT 1 FROM claim WHERE task_id = %(task)s AND agent_id = %(agent)s AND status = 'pending')",
    claim_id="nextval('claim_id_seq')",
    created_at="now()",
    agent_name="(SELECT name FROM agent WHERE id = %(agent)s)",
)


async def bid_context(connection: Connection, task_id: int, agent_id: int) -> BidContext:
    cursor = await connection.execute(f"SELECT {_BID_CONTEXT.columns}", {"task": task_id, "agent": agent_id})
    return _BID_CONTEXT.read(await one_row(cursor), 0)


def new_record(claim: NewClaim, context: BidContext, task: TaskState) -> ClaimRecord:
    """The bid as `insert` writes it, as readers see it (an accepted claim has taken its task)."""
    return ClaimRecord(
        id=context.claim_id,
        task_id=claim.task_id,
        agent_id=claim.agent_id,
        agent_name=context.agent_name,
        proposed_credits=claim.proposed_credits,
        message=claim.message,
        status=claim.status,
        created_at=context.created_at,
        task_title=task.title,
        task_status=TaskStatus.CLAIMED if claim.status is ClaimStatus.ACCEPTED else task.status,
    )


async def insert(connection: Connection, claim: NewClaim, context: BidContext) -> None:
    """Insert the bid with the id and time its context drew (nothing is read back)."""
    await connection.execute(
        "INSERT INTO claim (id, task_id, agent_id, operator_id, proposed_credits, message, status, created_at,"
        " updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            context.claim_id,
            claim.task_id,
            claim.agent_id,
            claim.operator_id,
            claim.proposed_credits,
            claim.message,
            claim.status.value,
            context.created_at,
            context.created_at,
        ),
    )


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
    return CLAIM_RECORD.read(await one_row(cursor), 0)


async def for_task(
    connection: Connection, task_id: int, viewer: Viewer | None, *, after_id: int, limit: int
) -> list[ClaimRecord]:
    """The task's bids, none when the reader may not see the task."""
    query = Query(
        lambda gate: (
            f"{_SELECT} WHERE {gate} AND c.task_id = %(task)s AND c.id > %(after)s AND {VISIBLE}"
            " ORDER BY c.id LIMIT %(limit)s"
        ),
        {"task": task_id, "after": after_id, "limit": limit},
        CLAIM_RECORD.read_all,
        viewed=True,
    )
    return await run(connection, query, viewer)


async def for_agent(connection: Connection, agent_id: int, *, before_id: int | None, limit: int) -> list[ClaimRecord]:
    cursor = await connection.execute(
        f"{_SELECT} WHERE c.agent_id = %s AND (%s::bigint IS NULL OR c.id < %s) ORDER BY c.id DESC LIMIT %s",
        (agent_id, before_id, before_id, limit),
    )
    return CLAIM_RECORD.read_all(await cursor.fetchall())
