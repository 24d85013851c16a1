"""Authentication and the rate limit, decided together in one statement on the request's connection."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple, TypeVar

from psycopg.pq import TransactionStatus

from app.repo.connections import Connection, Query, one_row
from app.repo.rows import Nested, row_type

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class KeyOwner:
    key_id: int
    kind: str
    principal: str  # who the rate limit and idempotency keys belong to: "agent:7", "operator:3", "admin:12"
    agent_id: int | None
    operator_id: int | None
    agent_status: str | None
    active: bool


@dataclass(frozen=True, slots=True)
class RateDecision:
    admitted_tat: datetime | None  # the new theoretical arrival time when admitted, else None
    current_tat: datetime | None  # the arrival time before this request
    now: datetime


class CallerFound(NamedTuple):
    """A key's owner and the rate limit's decision on this request."""

    owner: KeyOwner
    decision: RateDecision


# GCRA (one timestamp per caller): a request is admitted when the caller's theoretical arrival time, pushed one
# emission interval on, stays within one window of now. Exact across any number of server processes, because the
# decision is a single row update. `{caller}` is a SELECT of the principal to count.
_ADMIT = """
    INSERT INTO rate_limit AS r (principal, tat)
    {caller}
    ON CONFLICT (principal) DO UPDATE SET tat = greatest(r.tat, statement_timestamp()) + %(emission)s
     WHERE greatest(r.tat, statement_timestamp()) + %(emission)s <= statement_timestamp() + %(window)s
    RETURNING tat
"""
# Only active callers are counted (TaskHive: auth, then the rate limit). `caller` is the key's owner and the
# decision, one row, or none for an unknown key. The statement commits on its own (autocommit), and what it writes
# is bookkeeping: the counter (an unlogged table: no WAL) and a key's last_used_at, at most once a minute. `relaxed`
# lets that commit go without waiting for the WAL flush (set_config local to the statement's own transaction; a
# crash may forget a last_used_at, never anything acknowledged); `touched` reads it, so it runs before the write.
_CALLER = f"""
WITH relaxed AS MATERIALIZED (
    SELECT set_config('synchronous_commit', 'off', true) AS setting
), owner AS (
    SELECT k.id AS key_id, k.kind, k.agent_id, coalesce(k.operator_id, a.operator_id) AS operator_id,
           a.status AS agent_status,
           CASE k.kind WHEN 'agent' THEN 'agent:' || k.agent_id
                       WHEN 'operator' THEN 'operator:' || k.operator_id
                       ELSE 'admin:' || k.id END AS principal,
           (k.kind <> 'agent' OR a.status = 'active') AS active
      FROM api_key k LEFT JOIN agent a ON a.id = k.agent_id
     WHERE k.key_hash = %(key_hash)s AND k.kind = %(kind)s AND k.revoked_at IS NULL
), touched AS (
    UPDATE api_key SET last_used_at = statement_timestamp()
     WHERE id = (SELECT key_id FROM owner)
       AND (last_used_at IS NULL OR last_used_at < statement_timestamp() - interval '1 minute')
       AND (SELECT setting FROM relaxed) = 'off'
), admitted AS ({_ADMIT.format(caller="SELECT principal, statement_timestamp() + %(emission)s FROM owner WHERE active")}
), caller AS MATERIALIZED (
    SELECT o.key_id, o.kind, o.principal, o.agent_id, o.operator_id, o.agent_status, o.active,
           (SELECT tat FROM admitted) AS admitted_tat,
           (SELECT tat FROM rate_limit WHERE principal = o.principal) AS current_tat, statement_timestamp() AS now
      FROM owner o
)
"""
_CALLER_ROW = row_type(
    CallerFound,
    owner=Nested(
        row_type(
            KeyOwner,
            key_id="caller.key_id",
            kind="caller.kind",
            principal="caller.principal",
            agent_id="caller.agent_id",
            operator_id="caller.operator_id",
            agent_status="caller.agent_status",
            active="caller.active",
        )
    ),
    decision=Nested(
        row_type(RateDecision, admitted_tat="caller.admitted_tat", current_tat="caller.current_tat", now="caller.now")
    ),
)
_AUTHENTICATE = f"{_CALLER} SELECT {_CALLER_ROW.columns} FROM caller"
# A read after the authentication, in its statement: the read runs only for an active caller the rate limit admits.
# OFFSET 0 keeps the read a subquery of its own (the planner would otherwise fold a plain one into the join), so its
# gate is a one-time filter on the caller's row: a refused caller's statement reads no table. The read is joined
# laterally to the caller's one row, so its rows keep their order; with no row of its own it leaves one row whose
# read columns are NULL. The caller's columns are sent in the first row only (NULL in the others): a page of rows
# would otherwise carry them, timestamps and all, once a row, for the client to decode each time.
_ADMITTED = "(caller.active AND caller.admitted_tat IS NOT NULL)"
_CALLER_ONCE = _CALLER_ROW.select_list("CASE WHEN row_number() OVER () = 1 THEN {} END")
# `viewer` is the reader a read may depend on (app.repo.connections.VIEWER_AGENT).
_AUTHENTICATED = (
    "{caller}, viewer AS (SELECT agent_id, operator_id FROM caller) SELECT "
    + _CALLER_ONCE
    + ", found.* FROM caller LEFT JOIN LATERAL ({read} OFFSET 0) found ON true"
)
# A caller without a valid key, counted by its address ("address:203.0.113.9").
_ANONYMOUS_DECISION = row_type(
    RateDecision,
    admitted_tat="(SELECT tat FROM admitted)",
    current_tat="(SELECT tat FROM rate_limit WHERE principal = %(principal)s)",
    now="statement_timestamp()",
)
_ADMIT_ANONYMOUS = f"""
WITH admitted AS ({_ADMIT.format(caller="VALUES (%(principal)s, statement_timestamp() + %(emission)s)")})
SELECT {_ANONYMOUS_DECISION.columns}
"""
# A row whose arrival time has passed holds a full allowance, the same as no row: deleting it changes nothing.
_DELETE_IDLE = """
DELETE FROM rate_limit WHERE principal IN (SELECT principal FROM rate_limit
 WHERE tat < statement_timestamp() LIMIT %s)
"""


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """What authenticating a key takes: its hash and kind, and the rate limit's emission interval and window."""

    key_hash: str
    kind: str
    emission: timedelta
    window: timedelta


def _outside_a_transaction(connection: Connection) -> None:
    # The statement makes its own transaction's commit asynchronous (`relaxed`): inside a caller's transaction it
    # would make that commit asynchronous too.
    if connection.info.transaction_status != TransactionStatus.IDLE:
        raise RuntimeError("authentication runs on a connection with no transaction open")


async def authenticate(connection: Connection, check: KeyCheck) -> CallerFound | None:
    _outside_a_transaction(connection)
    cursor = await connection.execute(_AUTHENTICATE, _params(check))
    row = await cursor.fetchone()
    return _CALLER_ROW.read(row, 0) if row is not None else None


def _params(check: KeyCheck) -> dict[str, object]:
    return {"key_hash": check.key_hash, "kind": check.kind, "emission": check.emission, "window": check.window}


def authenticated_statement(query: Query[T]) -> str:
    """The statement that authenticates and counts the caller, then runs `query` if it was admitted."""
    return _AUTHENTICATED.format(caller=_CALLER, read=query.statement(_ADMITTED))


def statement_params(check: KeyCheck, query: Query[T]) -> dict[str, object]:
    params = _params(check)
    if clash := params.keys() & query.params.keys():
        raise ValueError(f"the query's parameters {sorted(clash)} are the authentication's")
    return params | query.params


async def run_authenticated(connection: Connection, check: KeyCheck, query: Query[T]) -> tuple[CallerFound | None, T]:
    """`authenticate` and `query` in one statement, the query run only if the caller is admitted: the caller found
    (None for an unknown key), and the query's reading of its rows (of none when the caller was refused). The
    caller decides from the first before it uses the second."""
    _outside_a_transaction(connection)
    cursor = await connection.execute(authenticated_statement(query), statement_params(check, query))
    rows = await cursor.fetchall()
    if not rows:
        return None, query.read([])
    found = _CALLER_ROW.read(rows[0], 0)
    if found.decision.admitted_tat is None or not found.owner.active:
        return found, query.read([])
    # The query's columns follow the caller's; a row whose first is NULL is the one left when it read nothing.
    at = _CALLER_ROW.width
    return found, query.read([row[at:] for row in rows if row[at] is not None])


async def admit_anonymous(
    connection: Connection, *, principal: str, emission: timedelta, window: timedelta
) -> RateDecision:
    cursor = await connection.execute(
        _ADMIT_ANONYMOUS, {"principal": principal, "emission": emission, "window": window}
    )
    return _ANONYMOUS_DECISION.read(await one_row(cursor), 0)


async def delete_idle(connection: Connection, *, batch: int = 5000) -> int:
    """Forget callers whose allowance is whole again (anonymous addresses would otherwise pile up)."""
    cursor = await connection.execute(_DELETE_IDLE, (batch,))
    return cursor.rowcount
