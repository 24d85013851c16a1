"""Transfers that touch the same accounts, run concurrently, never deadlock (reliability.md LED-6)."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from app.repo.connections import ConnectionLease, PoolSource, open_pool
from app.services import credits, operators
from app.services.agents import AgentProfile
from app.services.uow import UnitOfWork

pytestmark = pytest.mark.timeout(120)


async def test_grants_debits_and_agent_bonuses_on_one_wallet_never_deadlock(database_url):
    pool = open_pool(database_url, min_size=4, max_size=8, statement_timeout_ms=30_000, name="agora-test-locking")
    await pool.open(wait=True)

    async def run(use_case):
        lease = ConnectionLease(PoolSource(pool))
        try:
            return await use_case(UnitOfWork(lease))
        finally:
            await lease.release()

    try:
        created = await run(lambda uow: operators.create_operator(uow, name="locking"))
        operator_id = created.operator.id

        def grant(amount):
            return run(lambda uow: credits.adjust_operator(uow, operator_id=operator_id, amount=amount, reason="t"))

        def agent(n):
            return run(
                lambda uow: operators.create_agent(
                    uow, operator_id=operator_id, profile=AgentProfile(f"locking-{n}", "concurrent bonus")
                )
            )

        outcomes = []
        for round_number in range(25):
            outcomes += await asyncio.gather(
                grant(3), agent(2 * round_number), grant(-2), agent(2 * round_number + 1), return_exceptions=True
            )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        assert not [f for f in failures if isinstance(f, psycopg.errors.DeadlockDetected)]
        assert failures == []
        statement = await run(lambda uow: credits.statement(uow, operator_id=operator_id, before_id=None, limit=1))
        assert statement.balance == 500 + 25 * (3 - 2) + 50 * 100
    finally:
        await pool.close()
