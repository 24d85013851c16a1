"""The outbox: writing events inside the use case's transaction, and reading them back in commit-safe order.

Order and visibility: an event's position is (tx, id), its writing transaction's id then its own. Readers take only
events whose transaction is older than the oldest one still running (`_HORIZON`), so every event that can still
commit will sort after everything already read: a reader that remembers its last position never misses one and
never reads one twice, across any number of writers and server processes. Deliveries to webhooks are created by a
trigger in the same statement as the events (see the 0003 migration).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from app.repo.connections import Connection, one_row
from domain.events import Event, MatchRequest

NOTIFY_CHANNEL = "agora_events"
_HORIZON = "pg_snapshot_xmin(pg_current_snapshot())"

#: A position before every event.
ORIGIN: tuple[int, int] = (0, 0)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    tx: int
    type: str
    agent_id: int | None
    task_id: int | None
    data: bytes  # the JSON object as stored, sent on as is
    created_at: datetime

    @property
    def position(self) -> tuple[int, int]:
        return (self.tx, self.id)


_encode = msgspec.json.encode

_INSERT = """
INSERT INTO event (type, agent_id, task_id, data)
SELECT e.type, e.agent_id, e.task_id,
       -- TaskHive's task.status carries the change's time: the transaction's.
       CASE WHEN e.type = 'task.status' THEN e.data::jsonb || jsonb_build_object('updated_at', now())
            ELSE e.data::jsonb END
  FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::text[]) AS e (type, agent_id, task_id, data)
"""


async def insert(connection: Connection, events: Sequence[Event]) -> None:
    if not events:
        return
    await connection.execute(
        _INSERT,
        (
            [e.type.value for e in events],
            [e.agent_id for e in events],
            [e.task_id for e in events],
            [_encode(e.data).decode() for e in events],
        ),
    )


_INSERT_MATCHES = """
INSERT INTO event (type, agent_id, task_id, data)
SELECT 'task.new_match', a.id, %(task_id)s, %(data)s::jsonb
  FROM agent a
 WHERE a.status = 'active'
   AND a.operator_id <> %(poster_operator_id)s
   AND (a.category_ids && ARRAY[%(category_id)s::int]
        OR capability_terms(a.capabilities) && %(terms)s::text[])
"""


async def insert_matches(connection: Connection, match: MatchRequest) -> None:
    await connection.execute(
        _INSERT_MATCHES,
        {
            "task_id": match.task_id,
            "data": _encode(match.data).decode(),
            "poster_operator_id": match.poster_operator_id,
            "category_id": match.category_id,
            "terms": list(match.terms),
        },
    )


async def insert_ping(connection: Connection, webhook_id: int, data: dict[str, Any]) -> int:
    """A test event for one endpoint: no recipient (it appears on no stream), one delivery. Returns the delivery."""
    cursor = await connection.execute(
        """
        WITH e AS (INSERT INTO event (type, data) VALUES ('webhook.ping', %s::jsonb) RETURNING id)
        INSERT INTO webhook_delivery (webhook_id, event_id, next_attempt_at)
        SELECT %s, e.id, now() FROM e RETURNING id
        """,
        (_encode(data).decode(), webhook_id),
    )
    (delivery_id,) = await one_row(cursor)
    return int(delivery_id)


_COLUMNS = "id, tx::text::bigint, type, agent_id, task_id, data::text, created_at"


def compact_json(text: str) -> bytes:
    """jsonb prints `{"a": 1}`; frames and webhook bodies carry compact JSON like every other response."""
    return _encode(msgspec.json.decode(text))


def _to_event(row: Sequence[Any]) -> StoredEvent:
    return StoredEvent(row[0], row[1], row[2], row[3], row[4], compact_json(row[5]), row[6])


async def readable_after(
    connection: Connection,
    position: tuple[int, int],
    *,
    limit: int,
    agent_id: int | None = None,
    task_id: int | None = None,
) -> list[StoredEvent]:
    """Events after `position` whose writers have all finished, in position order: all of them, one agent's, or
    one task's public ones."""
    if agent_id is not None:
        scope, params = "agent_id = %(agent)s", {"agent": agent_id}
    elif task_id is not None:
        scope, params = "task_id = %(task)s AND agent_id IS NULL", {"task": task_id}
    else:
        scope, params = "true", {}
    cursor = await connection.execute(
        f"""SELECT {_COLUMNS} FROM event
             WHERE {scope} AND (tx, id) > (%(tx)s::text::xid8, %(id)s) AND tx < {_HORIZON}
             ORDER BY tx, id LIMIT %(limit)s""",
        {**params, "tx": str(position[0]), "id": position[1], "limit": limit},
    )
    return [_to_event(row) for row in await cursor.fetchall()]


async def unreadable_exist(connection: Connection, position: tuple[int, int]) -> bool:
    """Whether committed events wait behind a transaction still running (readers should look again soon)."""
    cursor = await connection.execute(
        f"SELECT EXISTS (SELECT 1 FROM event WHERE tx >= {_HORIZON} AND (tx, id) > (%s::text::xid8, %s))",
        (str(position[0]), position[1]),
    )
    (found,) = await one_row(cursor)
    return bool(found)


async def head(connection: Connection) -> tuple[int, int]:
    """The position of the last readable event: a new reader starts here to see only what comes next."""
    cursor = await connection.execute(
        f"SELECT tx::text::bigint, id FROM event WHERE tx < {_HORIZON} ORDER BY tx DESC, id DESC LIMIT 1"
    )
    row = await cursor.fetchone()
    return (row[0], row[1]) if row else ORIGIN


async def position_of(connection: Connection, event_id: int) -> tuple[int, int] | None:
    cursor = await connection.execute("SELECT tx::text::bigint, id FROM event WHERE id = %s", (event_id,))
    row = await cursor.fetchone()
    return (row[0], row[1]) if row else None


async def latest_public(connection: Connection, task_id: int) -> StoredEvent | None:
    cursor = await connection.execute(
        f"""SELECT {_COLUMNS} FROM event WHERE task_id = %s AND agent_id IS NULL AND tx < {_HORIZON}
             ORDER BY tx DESC, id DESC LIMIT 1""",
        (task_id,),
    )
    row = await cursor.fetchone()
    return _to_event(row) if row else None


async def delete_expired(connection: Connection, *, keep_days: int, batch: int = 5000) -> int:
    """Forget the oldest events older than `keep_days`, with their finished deliveries (attempts go with them).
    An event that still has a pending delivery stays until it is delivered or fails. Returns events deleted."""
    cursor = await connection.execute(
        """
        WITH old AS (
            SELECT e.id FROM event e
             WHERE e.created_at < now() - make_interval(days => %(days)s)
               AND NOT EXISTS (SELECT 1 FROM webhook_delivery d WHERE d.event_id = e.id AND d.status = 'pending')
             ORDER BY e.id LIMIT %(batch)s
        ), deliveries AS (
            DELETE FROM webhook_delivery d USING old WHERE d.event_id = old.id
        )
        DELETE FROM event e USING old WHERE e.id = old.id
        """,
        {"days": keep_days, "batch": batch},
    )
    return cursor.rowcount


async def newest_id(connection: Connection) -> int:
    cursor = await connection.execute("SELECT coalesce(max(id), 0) FROM event")
    (found,) = await one_row(cursor)
    return int(found)
