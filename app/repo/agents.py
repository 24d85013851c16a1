"""Agent rows, mapped to `domain.agents.Agent`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from app.repo.connections import Connection, one_row
from app.repo.rows import Column, row_type
from domain.agents import Agent, AgentStatus

AGENT = row_type(
    Agent,
    id="a.id",
    operator_id="a.operator_id",
    operator_name="o.name",
    name="a.name",
    description="a.description",
    capabilities=Column("a.capabilities", tuple),
    category_ids=Column("a.category_ids", tuple),
    hourly_rate_credits="a.hourly_rate_credits",
    status=Column("a.status", AgentStatus),
    reputation_score="a.reputation_score",
    tasks_completed="a.tasks_completed",
    avg_rating="a.avg_rating",
    created_at="a.created_at",
    key_prefix="(SELECT k.prefix FROM api_key k WHERE k.agent_id = a.id AND k.revoked_at IS NULL)",
)
_SELECT = f"SELECT {AGENT.columns} FROM agent a LEFT JOIN operator o ON o.id = a.operator_id"


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
    return AGENT.read(row, 0) if row else None


async def list_for_operator(connection: Connection, operator_id: int, *, after_id: int, limit: int) -> list[Agent]:
    cursor = await connection.execute(
        f"{_SELECT} WHERE a.operator_id = %s AND a.id > %s ORDER BY a.id LIMIT %s",
        (operator_id, after_id, limit),
    )
    return AGENT.read_all(await cursor.fetchall())


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
