"""Stored responses for Idempotency-Key, and the lock that tells a retry its first request is still running."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncCursor, errors

from app.repo import transactions
from app.repo.connections import Connection, one_row
from app.repo.rows import Column, row_type


@dataclass(frozen=True, slots=True)
class StoredResponse:
    fingerprint: str
    status: int
    content_type: str
    body: bytes  # as stored: sealed by the service before it is written, opened by it after it is read


@dataclass(frozen=True, slots=True)
class Claim:
    locked: bool
    stored: StoredResponse | None


_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 7302))"
_STORED_RESPONSE = row_type(
    StoredResponse,
    fingerprint="fingerprint",
    status="response_status",
    content_type="response_content_type",
    body=Column("response_body", bytes),
)
_FIND = f"""
SELECT {_STORED_RESPONSE.columns}
  FROM idempotency_key
 WHERE principal = %s AND key = %s AND expires_at > statement_timestamp()
"""
# An expired record for the same key is replaced: deleted by its own statement first (a DELETE in a CTE of the
# INSERT would run after the INSERT's uniqueness check). A live record makes the INSERT fail, which aborts the
# transaction and so keeps a second effect from committing.
_DELETE_EXPIRED_RECORD = """
DELETE FROM idempotency_key
 WHERE principal = %(principal)s AND key = %(key)s AND expires_at <= statement_timestamp()
"""
_STORE = """
INSERT INTO idempotency_key
       (principal, key, fingerprint, method, path, response_status, response_content_type, response_body, expires_at)
VALUES (%(principal)s, %(key)s, %(fingerprint)s, %(method)s, %(path)s, %(status)s, %(content_type)s, %(body)s,
        statement_timestamp() + make_interval(hours => %(ttl_hours)s))
"""


def _lock_name(principal: str, key: str) -> str:
    return f"{principal}|{key}"  # a principal never contains "|"


@dataclass(frozen=True, slots=True)
class SentClaim:
    """The claim's two statements, sent; `read_claim` reads their answers once they are back."""

    locked: AsyncCursor[Any]
    found: AsyncCursor[Any]


async def send_claim(connection: Connection, principal: str, key: str) -> SentClaim:
    """Try the key's lock, then read any live stored response: two statements, for the caller's pipeline (the
    transaction's first round trip).

    The read is a statement of its own so its snapshot is taken after the lock is held: a first request that
    committed just before is then seen, and never run twice.
    """
    locked = await connection.execute(_LOCK, (_lock_name(principal, key),))
    found = await connection.execute(_FIND, (principal, key))
    return SentClaim(locked, found)


async def read_claim(sent: SentClaim) -> Claim:
    (is_locked,) = await one_row(sent.locked)
    row = await sent.found.fetchone()
    return Claim(bool(is_locked), _STORED_RESPONSE.read(row, 0) if row else None)


async def find(connection: Connection, principal: str, key: str) -> StoredResponse | None:
    cursor = await connection.execute(_FIND, (principal, key))
    row = await cursor.fetchone()
    return _STORED_RESPONSE.read(row, 0) if row else None


async def send_store_and_commit(
    connection: Connection,
    *,
    principal: str,
    key: str,
    method: str,
    path: str,
    response: StoredResponse,
    ttl_hours: int,
) -> None:
    """Store the response and COMMIT: statements for the caller's pipeline, which its exit sends with whatever the
    use case queued before them (one round trip). If another request already holds the key, the store fails with
    `lost_race`, nothing is committed and the transaction is aborted, for the caller to roll back."""
    params = {
        "principal": principal,
        "key": key,
        "fingerprint": response.fingerprint,
        "method": method,
        "path": path,
        "status": response.status,
        "content_type": response.content_type,
        "body": response.body,
        "ttl_hours": ttl_hours,
    }
    # Deferred checks (a balanced ledger) run first: a violation aborts the pipeline before COMMIT.
    await connection.execute(transactions.CHECK_DEFERRED_CONSTRAINTS)
    await connection.execute(_DELETE_EXPIRED_RECORD, params)
    await connection.execute(_STORE, params)
    await transactions.send_commit(connection)


def lost_race(error: errors.UniqueViolation) -> bool:
    """Whether the store failed because a concurrent request with the same key stored its response first."""
    return error.diag.constraint_name == "uq_idempotency_key_principal_key"


async def delete_expired(connection: Connection, *, batch: int = 5000) -> int:
    cursor = await connection.execute(
        "DELETE FROM idempotency_key WHERE id IN (SELECT id FROM idempotency_key"
        " WHERE expires_at <= statement_timestamp() LIMIT %s)",
        (batch,),
    )
    return cursor.rowcount
