"""The SQL side of time passing on tasks (domain.clock): which tasks are due, picking one for the sweeper, and what
readers are shown of a task whose expiry has passed before anyone wrote it.

"Now" is the database's `statement_timestamp()`, in every process alike (reliability.md CHAOS-8: no server's own
clock decides). These conditions only find candidates; the domain decides under the task's lock, on a later clock
reading, so a task found due here is still due there.
"""

from __future__ import annotations

from app.repo.connections import Connection, one_row

#: An open task (of `t`) whose expiry has passed.
EXPIRY_DUE = "(t.status = 'open' AND t.expires_at <= statement_timestamp())"
#: An assignment whose lease has run out (a lease exists only while claimed or in progress: ck_task_lease_while_working).
LEASE_DUE = "(t.lease_expires_at <= statement_timestamp())"
DUE = f"({EXPIRY_DUE} OR {LEASE_DUE})"
#: A task's status as readers are told it: an open task past its expiry is expired, even before its expiry is
#: written (the next write to it, or the sweeper, writes it within seconds).
SHOWN_STATUS = f"CASE WHEN {EXPIRY_DUE} THEN 'expired' ELSE t.status END"

# The earliest due task that no one else holds, locked: expiries first (each check reads its partial index of
# migration 0011 in order), then leases. COALESCE runs the second only when the first finds nothing.
_PICK_DUE = """
SELECT coalesce(
    (SELECT t.id FROM task t WHERE t.status = 'open' AND t.expires_at <= statement_timestamp()
      ORDER BY t.expires_at LIMIT 1 FOR UPDATE SKIP LOCKED),
    (SELECT t.id FROM task t WHERE t.lease_expires_at <= statement_timestamp()
      ORDER BY t.lease_expires_at LIMIT 1 FOR UPDATE SKIP LOCKED))
"""


async def pick_due(connection: Connection) -> int | None:
    """Lock one due task that no other transaction holds (SKIP LOCKED: two sweepers never wait on each other, nor on
    a request that holds the task) and return its id; None when there is none."""
    (task_id,) = await one_row(await connection.execute(_PICK_DUE))
    return int(task_id) if task_id is not None else None


async def pending_bidders(connection: Connection, task_id: int) -> tuple[int, ...]:
    """The agents of the task's pending bids, in bid order (read with the task's lock held)."""
    cursor = await connection.execute(
        "SELECT agent_id FROM claim WHERE task_id = %s AND status = 'pending' ORDER BY id", (task_id,)
    )
    return tuple(agent_id for (agent_id,) in await cursor.fetchall())
