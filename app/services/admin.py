"""Marketplace administration: admin keys, agent suspension, accounts."""

from __future__ import annotations

from collections.abc import Callable

from app.repo import agents as agent_rows
from app.repo import keys, ledger
from app.services.agents import agent_not_found
from app.services.uow import UnitOfWork, must_exist
from domain import agents as rules
from domain.agents import Agent, AgentStatus
from domain.keys import KeyKind, generate_key
from domain.ledger import Account, AccountKind, TransferRecord


async def create_admin_key(uow: UnitOfWork, *, name: str) -> str:
    """A new admin key; the plaintext is returned once and only its hash is kept."""
    key = generate_key(KeyKind.ADMIN)
    async with uow:
        await keys.insert(uow.connection, key, name=name)
        await uow.commit()
    return key.plaintext


async def suspend_agent(uow: UnitOfWork, agent_id: int) -> Agent:
    return await _transition(uow, agent_id, rules.suspend)


async def reactivate_agent(uow: UnitOfWork, agent_id: int) -> Agent:
    return await _transition(uow, agent_id, rules.reactivate)


async def _transition(uow: UnitOfWork, agent_id: int, transition: Callable[[Agent], AgentStatus]) -> Agent:
    async with uow:
        agent = await agent_rows.get(uow.connection, agent_id, for_update=True)
        if agent is None:
            raise agent_not_found(agent_id)
        status = transition(agent)
        if status is not agent.status:
            await agent_rows.set_status(uow.connection, agent_id, status)
            agent = must_exist(await agent_rows.get(uow.connection, agent_id), f"agent {agent_id}")
        await uow.commit(agent)
    return agent


async def list_accounts(uow: UnitOfWork, *, after_id: int, limit: int, kind: AccountKind | None) -> list[Account]:
    return await ledger.list_accounts(await uow.reader(), after_id=after_id, limit=limit, kind=kind)


async def list_transfers(
    uow: UnitOfWork, *, before_id: int | None, limit: int, account_id: int | None, task_id: int | None, kind: str | None
) -> list[TransferRecord]:
    return await ledger.list_transfers(
        await uow.reader(), before_id=before_id, limit=limit, account_id=account_id, task_id=task_id, kind=kind
    )
