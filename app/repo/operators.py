"""Operators and their wallets."""

from __future__ import annotations

from app.repo.connections import Connection, one_row
from domain.agents import Operator


async def insert(connection: Connection, name: str) -> tuple[Operator, int]:
    """Create the operator and its wallet; returns the operator and the wallet's account id."""
    cursor = await connection.execute(
        """
        WITH created AS (INSERT INTO operator (name) VALUES (%s) RETURNING id, name, created_at),
             wallet AS (INSERT INTO account (kind, operator_id) SELECT 'operator_wallet', id FROM created RETURNING id)
        SELECT c.id, c.name, c.created_at, w.id FROM created c, wallet w
        """,
        (name,),
    )
    operator_id, op_name, created_at, wallet_id = await one_row(cursor)
    return Operator(id=operator_id, name=op_name, created_at=created_at), wallet_id


async def get(connection: Connection, operator_id: int) -> Operator | None:
    cursor = await connection.execute("SELECT id, name, created_at FROM operator WHERE id = %s", (operator_id,))
    row = await cursor.fetchone()
    return Operator(id=row[0], name=row[1], created_at=row[2]) if row else None


async def count_agents(connection: Connection, operator_id: int) -> int:
    cursor = await connection.execute("SELECT count(*) FROM agent WHERE operator_id = %s", (operator_id,))
    (count,) = await one_row(cursor)
    return int(count)
