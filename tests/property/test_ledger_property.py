"""Model-based property test of the ledger through the credit and operator use cases (reliability.md §3.2).

Hypothesis draws a sequence of steps (create an operator, create an agent, an admin grant or debit) over several
operators. Every use case commits, as in production, into the test's own database: the deferred balance check (L1)
runs at each COMMIT, and the examples' rows add up. After every step the ledger invariants L1-L5 and L10 are checked
over the whole ledger, and the wallets of the example's own operators against a Python model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from app.repo.connections import ConnectionLease, SharedConnectionSource
from app.services.agents import AgentProfile
from app.services.credits import adjust_operator
from app.services.operators import create_agent, create_operator
from app.services.uow import UnitOfWork
from domain.agents import NEW_AGENT_BONUS, NEW_OPERATOR_BONUS
from domain.errors import InsufficientCredits


@dataclass(frozen=True)
class NewOperator:
    pass


@dataclass(frozen=True)
class NewAgent:
    operator: int  # an index into the operators created so far (modulo their number)


@dataclass(frozen=True)
class Adjust:
    operator: int
    amount: int  # > 0 a grant, < 0 a debit


@dataclass(frozen=True)
class DebitAll:
    """Debit the wallet's whole balance, plus `extra` (0: down to exactly zero; > 0: an overdraft by that much)."""

    operator: int
    extra: int


STEPS = st.one_of(
    st.just(NewOperator()),
    st.builds(NewAgent, st.integers(0, 7)),
    st.builds(Adjust, st.integers(0, 7), st.integers(1, 2_000)),
    st.builds(Adjust, st.integers(0, 7), st.integers(-2_000, -1)),
    # Debits near the balance boundary are the interesting ones; draw them often.
    st.builds(Adjust, st.integers(0, 7), st.integers(-700, -400)),
    st.builds(DebitAll, st.integers(0, 7), st.sampled_from([0, 0, 1, 2, 1_000])),
)


@dataclass
class Model:
    """Each operator's wallet balance as the rules say it should be."""

    wallets: dict[int, int] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)

    def pick(self, index: int) -> int:
        return self.order[index % len(self.order)]


def new_uow(conn: psycopg.AsyncConnection) -> UnitOfWork:
    return UnitOfWork(ConnectionLease(SharedConnectionSource(conn)))


async def rows(conn: psycopg.AsyncConnection, query: str, params: tuple = ()) -> list[tuple]:
    cursor = await conn.execute(query, params)
    return await cursor.fetchall()


async def snapshot(conn: psycopg.AsyncConnection) -> tuple:
    """Everything a refused debit must leave untouched."""
    return (
        await rows(conn, "SELECT id, kind, operator_id, balance, version FROM account ORDER BY id"),
        await rows(conn, "SELECT count(*), coalesce(max(id), 0) FROM transfer"),
        await rows(conn, "SELECT count(*), coalesce(max(id), 0) FROM entry"),
    )


async def check_invariants(conn: psycopg.AsyncConnection, model: Model) -> None:
    # L1: the balance triggers ran at each use case's COMMIT; nothing unbalanced got in since.
    assert (
        await rows(conn, "SELECT transfer_id FROM entry GROUP BY transfer_id HAVING sum(amount) <> 0 OR count(*) < 2")
        == []
    ), "L1: an unbalanced transfer"
    assert (
        await rows(
            conn, "SELECT t.id FROM transfer t WHERE NOT EXISTS (SELECT FROM entry e WHERE e.transfer_id = t.id)"
        )
        == []
    )

    # L2: the books sum to zero.
    assert await rows(conn, "SELECT coalesce(sum(balance), 0) FROM account") == [(0,)], "L2: balances do not sum to 0"

    # L3 + L10 + the latest entry: cached balance = sum of entries = latest balance_after; version = entry count.
    mismatched = await rows(
        conn,
        """
        SELECT a.id, a.balance, a.version, e.total, e.legs, e.max_version, latest.balance_after
          FROM account a
          LEFT JOIN LATERAL (
                SELECT coalesce(sum(amount), 0) AS total, count(*) AS legs, coalesce(max(account_version), 0) AS max_version
                  FROM entry WHERE account_id = a.id) e ON true
          LEFT JOIN LATERAL (
                SELECT balance_after FROM entry WHERE account_id = a.id ORDER BY account_version DESC LIMIT 1) latest
            ON true
         WHERE a.balance <> e.total
            OR a.version <> e.legs
            OR a.version <> e.max_version
            OR a.balance IS DISTINCT FROM coalesce(latest.balance_after, 0)
        """,
    )
    assert mismatched == [], f"L3/L10: cached balance or version disagrees with the entries: {mismatched}"

    # L4: each account's entries form a chain, versions 1..n without gaps, balance_after = previous + amount.
    broken = await rows(
        conn,
        """
        SELECT account_id, account_version FROM (
            SELECT account_id, account_version, amount, balance_after,
                   row_number() OVER w AS n,
                   coalesce(lag(balance_after) OVER w, 0) AS previous
              FROM entry WINDOW w AS (PARTITION BY account_id ORDER BY account_version)) chained
         WHERE account_version <> n OR balance_after <> previous + amount
        """,
    )
    assert broken == [], f"L4: broken entry chains at {broken}"

    # L5: no wallet below zero.
    assert await rows(conn, "SELECT id FROM account WHERE kind <> 'platform_issuance' AND balance < 0") == []

    # The model: every operator this example created has the wallet the rules predict.
    wallets = dict(
        await rows(
            conn,
            "SELECT operator_id, balance FROM account WHERE operator_id = ANY(%s)",
            (list(model.wallets),),
        )
    )
    assert wallets == model.wallets


async def apply(conn: psycopg.AsyncConnection, model: Model, step: object, number: int) -> None:
    if isinstance(step, NewOperator) or not model.order:
        created = await create_operator(new_uow(conn), name=f"Operator {number}")
        assert created.credit_balance == NEW_OPERATOR_BONUS
        model.wallets[created.operator.id] = NEW_OPERATOR_BONUS
        model.order.append(created.operator.id)
        if isinstance(step, NewOperator):
            return
    if isinstance(step, NewAgent):
        operator_id = model.pick(step.operator)
        created = await create_agent(
            new_uow(conn), operator_id=operator_id, profile=AgentProfile(f"agent-{number}", "A property-test agent")
        )
        assert created.agent.operator_id == operator_id
        model.wallets[operator_id] += NEW_AGENT_BONUS
    elif isinstance(step, Adjust | DebitAll):
        operator_id = model.pick(step.operator)
        amount = step.amount if isinstance(step, Adjust) else -(model.wallets[operator_id] + step.extra)
        if amount == 0:
            return  # an empty wallet debited by nothing: not a request anyone can make
        expected = model.wallets[operator_id] + amount
        if expected < 0:
            before = await snapshot(conn)
            with pytest.raises(InsufficientCredits) as info:
                await adjust_operator(new_uow(conn), operator_id=operator_id, amount=amount, reason="debit")
            assert (info.value.balance, info.value.needed) == (model.wallets[operator_id], -amount)
            assert info.value.code == "INSUFFICIENT_CREDITS"
            assert await snapshot(conn) == before, "a refused debit changed the ledger"
            event("debit refused")
        else:
            posted = await adjust_operator(new_uow(conn), operator_id=operator_id, amount=amount, reason="adjust")
            assert (posted.amount, posted.balance_after) == (amount, expected)
            model.wallets[operator_id] = expected
            event("debit to exactly zero" if expected == 0 else "adjustment posted")


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEPS, min_size=1, max_size=25))
async def test_ledger_invariants_hold_after_every_step(conn, steps):
    model = Model()
    await check_invariants(conn, model)
    for number, step in enumerate(steps):
        await apply(conn, model, step, number)
        await check_invariants(conn, model)
