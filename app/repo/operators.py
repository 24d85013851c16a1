"""Operators and their wallets."""

from __future__ import annotations

from typing import NamedTuple

from app.repo.connections import Connection, one_row
from app.repo.rows import Nested, row_type
from domain.agents import Operator

OPERATOR = row_type(Operator, id="o.id", name="o.name", created_at="o.created_at")


class CreatedOperator(NamedTuple):
    operator: Operator
    wallet_id: int


_CREATED = row_type(CreatedOperator, operator=Nested(OPERATOR), wallet_id="w.id")


async def insert(connection: Connection, name: str) -> CreatedOperator:
    """Create the operator and its wallet."""
    cursor = await connection.execute(
        f"""
        WITH created AS (INSERT INTO operator (name) VALUES (%s) RETURNING id, name, created_at),
             wallet AS (INSERT INTO account (kind, operator_id) SELECT 'operator_wallet', id FROM created RETURNING id)
        SELECT {_CREATED.columns} FROM created o, wallet w
        """,
        (name,),
    )
    return _CREATED.read(await one_row(cursor), 0)


async def get(connection: Connection, operator_id: int) -> Operator | None:
    cursor = await connection.execute(f"SELECT {OPERATOR.columns} FROM operator o WHERE o.id = %s", (operator_id,))
    row = await cursor.fetchone()
    return OPERATOR.read(row, 0) if row else None


async def count_agents(connection: Connection, operator_id: int) -> int:
    cursor = await connection.execute("SELECT count(*) FROM agent WHERE operator_id = %s", (operator_id,))
    (count,) = await one_row(cursor)
    return int(count)
