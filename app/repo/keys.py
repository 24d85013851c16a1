"""API key rows: only the SHA-256 of a key and its first 14 characters are stored."""

from __future__ import annotations

from app.repo.connections import Connection, one_row
from domain.keys import NewKey


async def insert(
    connection: Connection,
    key: NewKey,
    *,
    agent_id: int | None = None,
    operator_id: int | None = None,
    name: str | None = None,
) -> int:
    cursor = await connection.execute(
        "INSERT INTO api_key (kind, key_hash, prefix, name, agent_id, operator_id)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (key.kind.value, key.key_hash, key.display_prefix, name, agent_id, operator_id),
    )
    (key_id,) = await one_row(cursor)
    return int(key_id)


async def revoke_agent_keys(connection: Connection, agent_id: int) -> int:
    cursor = await connection.execute(
        "UPDATE api_key SET revoked_at = statement_timestamp() WHERE agent_id = %s AND revoked_at IS NULL",
        (agent_id,),
    )
    return cursor.rowcount
