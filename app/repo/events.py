"""The outbox: writing events inside the use case's transaction, and reading them back in commit-safe order.

Order and visibility: an event's position is (tx, id), its writing transaction's id then its own. Readers take only
events whose transaction is older than the oldest one still running (`HORIZON`), so every event that can still
commit will sort after everything already read: a reader that remembers its last position never misses one and
never reads one twice, across any number of writers and server processes. Deliveries to webhooks are created by a
trigger in the same statement as the events (see the 0003 migration).

A posted task's `task.new_match` is one event with no recipient and an `event_match` row holding the task's side
of the match (see the 0009 migration): readers work out which agents it reaches when they read it (`match_rule`),
the delivery worker fans it out into webhook deliveries after the commit (app.repo.deliveries.fan_out_matches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from app.repo.connections import Connection, one_row
from app.repo.rows import Column, Field, row_type
from domain.events import Event, MatchRequest

NOTIFY_CHANNEL = "agora_events"
HORIZON = "pg_snapshot_xmin(pg_current_snapshot())"

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
    # A shared match (agent_id None): the agents it reaches among those the reader asked about; None otherwise.
    recipients: tuple[int, ...] | None = None

    @property
    def position(self) -> tuple[int, int]:
        return (self.tx, self.id)


_encode = msgspec.json.encode

# The events go as one JSON array, expanded in order: psycopg dumps a Python list as an array in Python (a type
# scan and a regular-expression escape per element), which cost more than the rest of the statement's parameters.
_INSERT = """
INSERT INTO event (type, agent_id, task_id, data)
SELECT e.type, e.agent_id, e.task_id,
       -- TaskHive's task.status carries the change's time: the transaction's.
       CASE WHEN e.type = 'task.status' THEN e.data || jsonb_build_object('updated_at', now()) ELSE e.data END
  FROM jsonb_to_recordset(%s::jsonb) AS e (type text, agent_id bigint, task_id bigint, data jsonb)
"""


async def insert(connection: Connection, events: Sequence[Event]) -> None:
    if not events:
        return
    rows = [{"type": e.type.value, "agent_id": e.agent_id, "task_id": e.task_id, "data": e.data} for e in events]
    await connection.execute(_INSERT, (_encode(rows).decode(),))


def match_rule(agent: str = "a", terms: str | None = None) -> str:
    """The SQL condition under which agent row `agent` gets the match `m` (an event_match row): it is active, of
    another operator than the poster's, and its categories include the task's or its capabilities, lower-cased
    (`terms`, by default computed as the GIN index on agents has them), name a word of the task's title."""
    terms = terms or f"capability_terms({agent}.capabilities)"
    return (
        f"{agent}.status = 'active' AND {agent}.operator_id <> m.poster_operator_id"
        f" AND ({agent}.category_ids && ARRAY[m.category_id] OR {terms} && m.terms)"
    )


#: A shared match, as opposed to an event for one agent or a task's public status.
SHARED_MATCH = "type = 'task.new_match' AND agent_id IS NULL"

_INSERT_MATCH = """
WITH e AS (
    INSERT INTO event (type, task_id, data) VALUES ('task.new_match', %(task_id)s, %(data)s::jsonb) RETURNING id
)
INSERT INTO event_match (event_id, poster_operator_id, category_id, terms)
SELECT e.id, %(poster_operator_id)s, %(category_id)s, %(terms)s::text[] FROM e
"""


async def insert_matches(connection: Connection, match: MatchRequest) -> None:
    """One event for every agent the task matches, whoever they are: two rows, whether it matches two agents or two
    thousand. Readers resolve the recipients (`match_rule`); the webhook trigger skips it (it has no agent)."""
    await connection.execute(
        _INSERT_MATCH,
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


_AFTER = "(%(tx)s::text::xid8, %(id)s)"


def compact_json(text: str) -> bytes:
    """jsonb prints `{"a": 1}`; frames and webhook bodies carry compact JSON like every other response."""
    return _encode(msgspec.json.decode(text))


def _agent_ids(ids: list[int] | None) -> tuple[int, ...] | None:
    return tuple(ids) if ids is not None else None


# An event row (`e`). Its position's tx is read as a bigint; statements order by `e.tx` (an xid8, which the
# indexes hold), never by the alias.
_EVENT_FIELDS: dict[str, Field] = dict(
    id="e.id",
    tx="e.tx::text::bigint",
    type="e.type",
    agent_id="e.agent_id",
    task_id="e.task_id",
    data=Column("e.data::text", compact_json),
    created_at="e.created_at",
)
_EVENT = row_type(StoredEvent, **_EVENT_FIELDS)


# An agent's events: its own, and the shared matches it gets as it is now (merged in position order; each branch
# stops at `limit`). The matches are scanned in position order from `position` and tested against the agent's row.
_AGENT_EVENTS = f"""
SELECT * FROM (
    (SELECT {_EVENT.columns} FROM event e
      WHERE e.agent_id = %(agent)s AND (e.tx, e.id) > {_AFTER} AND e.tx < {HORIZON}
      ORDER BY e.tx, e.id LIMIT %(limit)s)
    UNION ALL
    (SELECT {_EVENT.columns}
       FROM agent a JOIN event_match m ON {match_rule()} JOIN event e ON e.id = m.event_id
      WHERE a.id = %(agent)s AND (m.tx, m.event_id) > {_AFTER} AND m.tx < {HORIZON}
      ORDER BY m.tx, m.event_id LIMIT %(limit)s)
) AS mine
ORDER BY mine.tx, mine.id LIMIT %(limit)s
"""

# A task's public status: its rows without a recipient, but for the shared match (which is for the matched only).
_TASK_EVENTS = f"""
SELECT {_EVENT.columns} FROM event e
 WHERE e.task_id = %(task)s AND e.agent_id IS NULL AND e.type <> 'task.new_match'
   AND (e.tx, e.id) > {_AFTER} AND e.tx < {HORIZON}
 ORDER BY e.tx, e.id LIMIT %(limit)s
"""

# Every event (the event hub's read), each shared match with the agents it reaches among `among`: those agents'
# rows are read once, and each match is tested against them in memory.
_EVENT_WITH_RECIPIENTS = row_type(
    StoredEvent,
    **_EVENT_FIELDS,
    recipients=Column(
        f"""CASE WHEN m.event_id IS NOT NULL
                 THEN ARRAY(SELECT l.id FROM listening l WHERE {match_rule("l", "l.terms")} ORDER BY l.id) END""",
        _agent_ids,
    ),
)
_ALL_EVENTS = f"""
WITH listening AS MATERIALIZED (
    SELECT a.id, a.status, a.operator_id, a.category_ids, capability_terms(a.capabilities) AS terms
      FROM agent a WHERE a.id = ANY (%(among)s::bigint[])
)
SELECT {_EVENT_WITH_RECIPIENTS.columns}
  FROM event e LEFT JOIN event_match m ON m.event_id = e.id AND e.type = 'task.new_match' AND e.agent_id IS NULL
 WHERE (e.tx, e.id) > {_AFTER} AND e.tx < {HORIZON}
 ORDER BY e.tx, e.id LIMIT %(limit)s
"""


async def readable_after(
    connection: Connection,
    position: tuple[int, int],
    *,
    limit: int,
    agent_id: int | None = None,
    task_id: int | None = None,
    among: Sequence[int] = (),
) -> list[StoredEvent]:
    """Events after `position` whose writers have all finished, in position order: one agent's (the shared
    matches it gets included), one task's public ones, or all of them (each shared match with the agents it
    reaches among `among`, in `StoredEvent.recipients`)."""
    params: dict[str, Any] = {"tx": str(position[0]), "id": position[1], "limit": limit}
    row = _EVENT
    if agent_id is not None:
        sql, params["agent"] = _AGENT_EVENTS, agent_id
    elif task_id is not None:
        sql, params["task"] = _TASK_EVENTS, task_id
    else:
        sql, params["among"], row = _ALL_EVENTS, list(among), _EVENT_WITH_RECIPIENTS
    cursor = await connection.execute(sql, params)
    return row.read_all(await cursor.fetchall())


async def unreadable_exist(connection: Connection, position: tuple[int, int]) -> bool:
    """Whether committed events wait behind a transaction still running (readers should look again soon)."""
    cursor = await connection.execute(
        f"SELECT EXISTS (SELECT 1 FROM event WHERE tx >= {HORIZON} AND (tx, id) > (%s::text::xid8, %s))",
        (str(position[0]), position[1]),
    )
    (found,) = await one_row(cursor)
    return bool(found)


# Ordered by e.tx, the xid8 the position index holds: an unqualified `tx` would name the bigint output column, and
# sort every readable event.
_HEAD = f"SELECT e.tx::text::bigint, e.id FROM event e WHERE e.tx < {HORIZON} ORDER BY e.tx DESC, e.id DESC LIMIT 1"


async def head(connection: Connection) -> tuple[int, int]:
    """The position of the last readable event: a new reader starts here to see only what comes next."""
    cursor = await connection.execute(_HEAD)
    row = await cursor.fetchone()
    return (row[0], row[1]) if row else ORIGIN


async def position_of(connection: Connection, event_id: int) -> tuple[int, int] | None:
    cursor = await connection.execute("SELECT tx::text::bigint, id FROM event WHERE id = %s", (event_id,))
    row = await cursor.fetchone()
    return (row[0], row[1]) if row else None


async def latest_public(connection: Connection, task_id: int) -> StoredEvent | None:
    cursor = await connection.execute(
        f"""SELECT {_EVENT.columns} FROM event e
             WHERE e.task_id = %s AND e.agent_id IS NULL AND e.type <> 'task.new_match' AND e.tx < {HORIZON}
             ORDER BY e.tx DESC, e.id DESC LIMIT 1""",
        (task_id,),
    )
    row = await cursor.fetchone()
    return _EVENT.read(row, 0) if row else None


async def delete_expired(connection: Connection, *, keep_days: int, batch: int = 5000) -> int:
    """Forget the oldest events older than `keep_days`, with their finished deliveries (attempts go with them) and
    a match's criteria. An event that still has a pending delivery stays until it is delivered or fails, and a
    match until the webhook fan-out has passed it. Returns events deleted."""
    cursor = await connection.execute(
        """
        WITH old AS (
            SELECT e.id FROM event e
             WHERE e.created_at < now() - make_interval(days => %(days)s)
               AND NOT EXISTS (SELECT 1 FROM webhook_delivery d WHERE d.event_id = e.id AND d.status = 'pending')
               AND NOT EXISTS (SELECT 1 FROM event_match m, match_fan_out f
                                WHERE m.event_id = e.id AND (m.tx, m.event_id) > (f.tx, f.event_id))
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
