"""Agent rows, mapped to `domain.agents.Agent`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.repo.connections import Connection, one_row
from domain.agents import Agent, AgentStatus

_COLUMNS = """
    a.id, a.operator_id, o.name, a.name, a.description, a.capabilities, a.category_ids, a.hourly_rate_credits,
    a.status, a.reputation_score, a.tasks_completed, a.avg_rating, a.created_at,
    (SELECT k.prefix FROM api_key k WHERE k.agent_id = a.id AND k.revoked_at IS NULL)
"""
_SELECT = f"SELECT {_COLUMNS} FROM agent a LEFT JOIN operator o ON o.id = a.operator_id"


def _to_agent(row: Sequence[Any]) -> Agent:
    return Agent(
        id=row[0],
        operator_id=row[1],
        operator_name=row[2],
        name=row[3],
        description=row[4],
        capabilities=tuple(row[5]),
        category_ids=tuple(row[6]),
        hourly_rate_credits=row[7],
        status=AgentStatus(row[8]),
        reputation_score=row[9],
        tasks_completed=row[10],
        avg_rating=row[11],
        created_at=row[12],
        key_prefix=row[13],
    )


async def insert(
    connection: Connection,
    *,
    operator_id: int | None,
    name: str,
    description: str,
    capabilities: Sequence[str] = (),
    category_ids: Sequence[int] = (),
    hourly_rate_credits: int | None = None,
    status: AgentStatus = AgentStatus.ACTIVE,
    verification_code: str | None = None,
) -> int:
    cursor = await connection.execute(
        "INSERT INTO agent (operator_id, name, description, capabilities, category_ids, hourly_rate_credits,"
        " status, verification_code) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            operator_id,
            name,
            description,
            list(capabilities),
            list(category_ids),
            hourly_rate_credits,
            status.value,
            verification_code,
        ),
    )
    (agent_id,) = await one_row(cursor)
    return int(agent_id)


async def get(connection: Connection, agent_id: int, *, for_update: bool = False) -> Agent | None:
    if for_update:
        await connection.execute("SELECT 1 FROM agent WHERE id = %s FOR UPDATE", (agent_id,))
    cursor = await connection.execute(f"{_SELECT} WHERE a.id = %s", (agent_id,))
    row = await cursor.fetchone()
    return _to_agent(row) if row else None


async def list_for_operator(connection: Connection, operator_id: int, *, after_id: int, limit: int) -> list[Agent]:
    cursor = await connection.execute(
        f"{_SELECT} WHERE a.operator_id = %s AND a.id > %s ORDER BY a.id LIMIT %s",
        (operator_id, after_id, limit),
    )
    return [_to_agent(row) for row in await cursor.fetchall()]


# Only these columns may be changed through `update_profile`; the names are never taken from input.
PROFILE_COLUMNS = ("name", "description", "capabilities", "category_ids", "hourly_rate_credits")


async def update_profile(connection: Connection, agent_id: int, changes: Mapping[str, object]) -> None:
    columns = [column for column in PROFILE_COLUMNS if column in changes]
    if not columns:
        return
    assignments = ", ".join(f"{column} = %s" for column in columns)
    values = [list(v) if isinstance(v, tuple) else v for v in (changes[c] for c in columns)]
    await connection.execute(
        f"UPDATE agent SET {assignments}, updated_at = statement_timestamp() WHERE id = %s",
        (*values, agent_id),
    )


async def set_status(connection: Connection, agent_id: int, status: AgentStatus) -> None:
    await connection.execute(
        "UPDATE agent SET status = %s, updated_at = statement_timestamp() WHERE id = %s",
        (status.value, agent_id),
    )


async def claim(connection: Connection, verification_code: str, operator_id: int) -> int | None:
    """Give a self-registered agent to an operator; None when no unclaimed agent has that code."""
    cursor = await connection.execute(
        "UPDATE agent SET operator_id = %s, status = 'active', claimed_at = statement_timestamp(),"
        " updated_at = statement_timestamp()"
        " WHERE verification_code = %s AND status = 'pending_claim' AND operator_id IS NULL RETURNING id",
        (operator_id, verification_code),
    )
    row = await cursor.fetchone()
    return row[0] if row else None


async def known_category_ids(connection: Connection, category_ids: Sequence[int]) -> set[int]:
    cursor = await connection.execute("SELECT id FROM category WHERE id = ANY(%s)", (list(category_ids),))
    return {row[0] for row in await cursor.fetchall()}
