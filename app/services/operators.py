"""Operators: creation (by admins), their agents and keys, claiming self-registered agents."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.repo import agents as agent_rows
from app.repo import keys, ledger
from app.repo import operators as operator_rows
from app.services import credits
from app.services.agents import AgentProfile, agent_not_found, check_categories
from app.services.uow import UnitOfWork, must_exist
from domain import agents as rules
from domain.agents import NEW_AGENT_BONUS, NEW_OPERATOR_BONUS, Agent, AgentStatus, Operator
from domain.errors import NotFound
from domain.keys import KeyKind, generate_key
from domain.ledger import TransferKind


@dataclass(frozen=True, slots=True)
class OperatorCreated:
    operator: Operator
    api_key: str
    credit_balance: int


@dataclass(frozen=True, slots=True)
class OperatorProfile:
    operator: Operator
    credit_balance: int
    agents_count: int


@dataclass(frozen=True, slots=True)
class AgentWithKey:
    agent: Agent
    api_key: str


async def create_operator(uow: UnitOfWork, *, name: str) -> OperatorCreated:
    """Create an operator with its wallet and first key, and give it the new-operator bonus."""
    key = generate_key(KeyKind.OPERATOR)
    async with uow:
        operator, wallet_id = await operator_rows.insert(uow.connection, name)
        await keys.insert(uow.connection, key, operator_id=operator.id)
        posted = await credits.issue(
            uow.connection,
            wallet_id=wallet_id,
            amount=NEW_OPERATOR_BONUS,
            kind=TransferKind.OPERATOR_BONUS,
            reason="Welcome bonus",
            operator_id=operator.id,
        )
        created = OperatorCreated(operator, key.plaintext, posted.balance_after)
        await uow.commit(created)
    return created


async def profile(uow: UnitOfWork, operator_id: int) -> OperatorProfile:
    async with uow:
        operator = await operator_rows.get(uow.connection, operator_id)
        wallet = await ledger.wallet(uow.connection, operator_id)
        agents_count = await operator_rows.count_agents(uow.connection, operator_id)
        await uow.commit()
    if operator is None or wallet is None:
        raise credits.operator_not_found(operator_id)
    return OperatorProfile(operator, wallet.balance, agents_count)


async def create_agent(uow: UnitOfWork, *, operator_id: int, profile: AgentProfile) -> AgentWithKey:
    """Create an active agent for the operator, with its key (shown once) and the new-agent bonus."""
    key = generate_key(KeyKind.AGENT)
    async with uow:
        await check_categories(uow.connection, profile.category_ids)
        agent_id = await agent_rows.insert(
            uow.connection,
            operator_id=operator_id,
            name=profile.name,
            description=profile.description,
            capabilities=profile.capabilities,
            category_ids=profile.category_ids,
            hourly_rate_credits=profile.hourly_rate_credits,
        )
        await keys.insert(uow.connection, key, agent_id=agent_id)
        await _agent_bonus(uow, operator_id, agent_id, f"Agent bonus: {profile.name}")
        agent = must_exist(await agent_rows.get(uow.connection, agent_id), f"agent {agent_id}")
        created = AgentWithKey(agent, key.plaintext)
        await uow.commit(created)
    return created


async def _agent_bonus(uow: UnitOfWork, operator_id: int, agent_id: int, reason: str) -> None:
    wallet = must_exist(await ledger.wallet(uow.connection, operator_id), f"operator {operator_id}'s wallet")
    await credits.issue(
        uow.connection,
        wallet_id=wallet.id,
        amount=NEW_AGENT_BONUS,
        kind=TransferKind.AGENT_BONUS,
        reason=reason,
        operator_id=operator_id,
        agent_id=agent_id,
    )


async def list_agents(uow: UnitOfWork, *, operator_id: int, after_id: int, limit: int) -> list[Agent]:
    return await agent_rows.list_for_operator(await uow.reader(), operator_id, after_id=after_id, limit=limit)


async def _owned_agent(uow: UnitOfWork, operator_id: int, agent_id: int) -> Agent:
    agent = await agent_rows.get(uow.connection, agent_id, for_update=True)
    if agent is None or agent.operator_id != operator_id:
        # Another operator's agent is reported as missing: its existence is not ours to reveal.
        raise agent_not_found(agent_id)
    return agent


async def rotate_key(uow: UnitOfWork, *, operator_id: int, agent_id: int) -> AgentWithKey:
    """Revoke the agent's key and issue a new one, atomically: the old key stops working at once."""
    key = generate_key(KeyKind.AGENT)
    async with uow:
        await _owned_agent(uow, operator_id, agent_id)
        await keys.revoke_agent_keys(uow.connection, agent_id)
        await keys.insert(uow.connection, key, agent_id=agent_id)
        agent = must_exist(await agent_rows.get(uow.connection, agent_id), f"agent {agent_id}")
        rotated = AgentWithKey(agent, key.plaintext)
        await uow.commit(rotated)
    return rotated


async def pause_agent(uow: UnitOfWork, *, operator_id: int, agent_id: int) -> Agent:
    return await _change_status(uow, operator_id, agent_id, rules.pause)


async def resume_agent(uow: UnitOfWork, *, operator_id: int, agent_id: int) -> Agent:
    return await _change_status(uow, operator_id, agent_id, rules.resume)


async def _change_status(
    uow: UnitOfWork, operator_id: int, agent_id: int, transition: Callable[[Agent], AgentStatus]
) -> Agent:
    async with uow:
        agent = await _owned_agent(uow, operator_id, agent_id)
        status = transition(agent)
        if status is not agent.status:
            await agent_rows.set_status(uow.connection, agent_id, status)
            agent = must_exist(await agent_rows.get(uow.connection, agent_id), f"agent {agent_id}")
        await uow.commit(agent)
    return agent


async def claim_agent(uow: UnitOfWork, *, operator_id: int, verification_code: str) -> Agent:
    """Take ownership of a self-registered agent by its verification code; the claim earns the agent bonus."""
    async with uow:
        agent_id = await agent_rows.claim(uow.connection, verification_code.strip(), operator_id)
        if agent_id is None:
            raise NotFound(
                "No unclaimed agent has this verification code",
                "Check the code the agent received from POST /api/v1/agents/register; a code works only once.",
                code="AGENT_NOT_FOUND",
            )
        agent = must_exist(await agent_rows.get(uow.connection, agent_id), f"agent {agent_id}")
        await _agent_bonus(uow, operator_id, agent_id, f"Agent claim bonus: {agent.name}")
        await uow.commit(agent)
    return agent
