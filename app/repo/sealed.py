"""Every column that holds a sealed value (app/crypto.py), and the statements that re-seal them.

A stored value's first byte is its format: 1 is a sealed value; 0 is plaintext that migration 0006 marked and left
for the seal pass (the migration has no key). The seal pass and key rotation read batches in id order and write
each new value only if the row still holds the value they read (a compare-and-swap), so a pass never overwrites
a concurrent change and never holds a lock while Python seals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.repo.connections import Connection

UNSEALED_MARK = b"\x00"


@dataclass(frozen=True, slots=True)
class SealedColumn:
    table: str
    column: str
    purpose: str  # the context a value is sealed to is `<purpose>:<context columns joined by "|">`
    context_columns: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"


# Webhook secrets are sealed to their row, not their column: rotation moves `secret` into `previous_secret` in SQL.
SEALED_COLUMNS = (
    SealedColumn("idempotency_key", "response_body", "idempotency_key", ("principal", "key")),
    SealedColumn("webhook", "secret", "webhook", ("id",)),
    SealedColumn("webhook", "previous_secret", "webhook", ("id",)),
)


@dataclass(frozen=True, slots=True)
class StoredValue:
    row_id: int
    context_values: tuple[str, ...]
    stored: bytes


def _unsealed(column: SealedColumn) -> str:
    # Written exactly as the partial index ix_idempotency_key_unsealed says it, so the planner can use it.
    return f"substring({column.column} from 1 for 1) = '\\x00'::bytea"


async def batch(
    connection: Connection, column: SealedColumn, *, after_id: int, limit: int, unless_header: bytes | None
) -> list[StoredValue]:
    """Values in rows after `after_id` (id order): the unsealed ones when `unless_header` is None, else every one
    that does not start with it (sealed under another key, or unsealed)."""
    condition = _unsealed(column) if unless_header is None else f"substring({column.column} from 1 for 5) <> %(header)s"
    context = ", ".join(f"{name}::text AS context_{n}" for n, name in enumerate(column.context_columns))
    cursor = await connection.execute(
        f"""SELECT id, {column.column}, {context} FROM {column.table}
             WHERE id > %(after)s AND {column.column} IS NOT NULL AND {condition}
             ORDER BY id LIMIT %(limit)s""",
        {"after": after_id, "limit": limit, "header": unless_header},
    )
    return [StoredValue(row[0], tuple(row[2:]), bytes(row[1])) for row in await cursor.fetchall()]


async def replace(connection: Connection, column: SealedColumn, changes: Sequence[tuple[int, bytes, bytes]]) -> int:
    """Write (row id, value read, new value) changes where the row still holds the value read; returns how many."""
    if not changes:
        return 0
    ids, old, new = zip(*changes, strict=True)
    cursor = await connection.execute(
        f"""UPDATE {column.table} t SET {column.column} = c.new
              FROM unnest(%s::bigint[], %s::bytea[], %s::bytea[]) AS c (id, old, new)
             WHERE t.id = c.id AND t.{column.column} = c.old""",
        (list(ids), list(old), list(new)),
    )
    return cursor.rowcount


async def census(connection: Connection, column: SealedColumn) -> dict[str, int]:
    """How many values are sealed under each key id (hex), and how many are still `unsealed`."""
    cursor = await connection.execute(
        f"""SELECT CASE WHEN {_unsealed(column)} THEN 'unsealed'
                        ELSE encode(substring({column.column} from 2 for 4), 'hex') END, count(*)
              FROM {column.table} WHERE {column.column} IS NOT NULL GROUP BY 1 ORDER BY 1"""
    )
    return {key: count for key, count in await cursor.fetchall()}
