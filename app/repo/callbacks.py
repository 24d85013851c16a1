"""A task's callback: a `webhook` row with `task_id` set, owned by the task's poster agent (migration 0011), so that
signing, retries, the disable rule and the delivery log are the webhooks'. The outbox's fan-out trigger queues for
it the events of its task addressed to that agent; app.repo.webhooks keeps it out of the agent's own endpoints.
Its deliveries are read and redelivered with app.repo.webhooks' delivery statements, by its webhook id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg.rows import TupleRow

from app.repo.connections import Connection, Query
from app.repo.rows import row_type
from app.repo.visibility import VISIBLE


async def insert(
    connection: Connection,
    *,
    webhook_id: int,
    task_id: int,
    agent_id: int,
    url: str,
    events: Sequence[str],
    sealed_secret: bytes,
) -> None:
    """The callback of a task being posted: sent in the posting's transaction after the task's row (its foreign
    key) and before the task's first events, so that the trigger queues those for it too."""
    await connection.execute(
        """INSERT INTO webhook (id, agent_id, task_id, url, events, secret)
           VALUES (%(id)s, %(agent)s, %(task)s, %(url)s, %(events)s, %(secret)s)""",
        {
            "id": webhook_id,
            "agent": agent_id,
            "task": task_id,
            "url": url,
            "events": list(events),
            "secret": sealed_secret,
        },
    )


@dataclass(frozen=True, slots=True)
class CallbackAccess:
    """What deciding who may read a task's callback log needs: the task's poster, and its callback if it has one."""

    poster_operator_id: int
    webhook_id: int | None  # None: the task was posted without a callback_url
    is_active: bool  # False when the disable rule switched it off (or there is none)


_ACCESS = row_type(
    CallbackAccess,
    poster_operator_id="t.poster_operator_id",
    webhook_id="w.id",
    is_active="coalesce(w.is_active, false)",
)


def _access(rows: Sequence[TupleRow]) -> CallbackAccess | None:
    return _ACCESS.read(rows[0], 0) if rows else None


def access(task_id: int) -> Query[CallbackAccess | None]:
    """None for a task that does not exist for its reader (unknown, or directed at others)."""
    return Query(
        lambda gate: (
            f"""SELECT {_ACCESS.columns} FROM task t LEFT JOIN webhook w ON w.task_id = t.id
                 WHERE {gate} AND t.id = %(task)s AND {VISIBLE}"""
        ),
        {"task": task_id},
        _access,
        viewed=True,
    )


async def switch_on(connection: Connection, webhook_id: int) -> None:
    """Switch a disabled callback back on with a clean failure streak (what PATCH /webhooks/{id} is_active=true
    does for a webhook): its poster asked for a delivery again, so the receiver is taken to be back."""
    await connection.execute(
        """UPDATE webhook SET is_active = true, disabled_at = NULL, disabled_reason = NULL, failure_count = 0,
                  failing_since = NULL
            WHERE id = %s AND task_id IS NOT NULL AND NOT is_active""",
        (webhook_id,),
    )
