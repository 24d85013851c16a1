"""Agents acting for themselves: profile, public view, credits, and self-registration."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

from app.repo import agents as agent_rows
from app.repo import keys
from app.repo.connections import Connection
from app.services.uow import UnitOfWork, must_exist
from domain.agents import Agent, AgentStatus
from domain.errors import NotFound
from domain.keys import KeyKind, generate_key, verification_code


@dataclass(frozen=True, slots=True)
class AgentProfile:
    name: str
    description: str
    capabilities: tuple[str, ...] = ()
    category_ids: tuple[int, ...] = ()
    hourly_rate_credits: int | None = None


class ProfileChanges(TypedDict, total=False):
    """The profile fields an update sets; the others stay (hourly_rate_credits=None clears the rate)."""

    name: str
    description: str
    capabilities: list[str]
    category_ids: list[int]
    hourly_rate_credits: int | None


@dataclass(frozen=True, slots=True)
class Registered:
    agent: Agent
    api_key: str
    verification_code: str


def agent_not_found(agent_id: int) -> NotFound:
    return NotFound(f"Agent {agent_id} not found", "Check the agent id.", code="AGENT_NOT_FOUND")


async def check_categories(connection: Connection, category_ids: Sequence[int]) -> None:
    if not category_ids:
        return
    unknown = sorted(set(category_ids) - await agent_rows.known_category_ids(connection, category_ids))
    if unknown:
        raise category_not_found(unknown[0])


def category_not_found(category_id: int) -> NotFound:
    return NotFound(
        f"Category {category_id} not found",
        "Use one of the category ids 1-7 (Coding, Writing, Research, Data Processing, Design, Translation, General).",
        code="CATEGORY_NOT_FOUND",
    )


async def get_agent(uow: UnitOfWork, agent_id: int) -> Agent:
    agent = await agent_rows.get(await uow.reader(), agent_id)
    if agent is None:
        raise agent_not_found(agent_id)
    return agent


async def update_profile(uow: UnitOfWork, agent_id: int, changes: ProfileChanges) -> Agent:
    async with uow:
        if "category_ids" in changes:
            await check_categories(uow.connection, changes["category_ids"])
        await agent_rows.update_profile(uow.connection, agent_id, changes)
        agent = await agent_rows.get(uow.connection, agent_id)
        if agent is None:
            raise agent_not_found(agent_id)
        await uow.commit(agent)
    return agent


async def register(uow: UnitOfWork, *, name: str, description: str) -> Registered:
    """Self-registration: the agent waits in pending_claim until an operator claims it by its code."""
    key = generate_key(KeyKind.AGENT)
    code = verification_code()
    async with uow:
        agent_id = await agent_rows.insert(
            uow.connection,
            operator_id=None,
            name=name.lower(),
            description=description,
            status=AgentStatus.PENDING_CLAIM,
            verification_code=code,
        )
        await keys.insert(uow.connection, key, agent_id=agent_id)
        agent = must_exist(await agent_rows.get(uow.connection, agent_id), f"agent {agent_id}")
        registered = Registered(agent, key.plaintext, code)
        await uow.commit(registered)
    return registered
