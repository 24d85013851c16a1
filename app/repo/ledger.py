"""The ledger: transfers and entries. Balances move only through entries (a trigger applies each one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import errors

from app.repo.connections import Connection, one_row
from domain.ledger import (
    TASKHIVE_TYPE,
    Account,
    AccountKind,
    HistoryEntry,
    TransferKind,
    TransferRecord,
    TransferRequest,
)


class Overdraft(Exception):
    """An entry would have taken a wallet or escrow account below zero; the statement was refused."""


_POST = """
WITH t AS (
    INSERT INTO transfer (kind, reason, operator_id, agent_id, task_id)
    VALUES (%(kind)s, %(reason)s, %(operator_id)s, %(agent_id)s, %(task_id)s) RETURNING id
), e AS (
    INSERT INTO entry (transfer_id, account_id, amount)
    SELECT t.id, p.account_id, p.amount
      FROM t, unnest(%(accounts)s::bigint[], %(amounts)s::bigint[]) WITH ORDINALITY AS p (account_id, amount, n)
     ORDER BY p.n
    RETURNING transfer_id, account_id, amount, balance_after
), credit_events AS (
    -- Every agent of an operator whose wallet moved hears of it (the outbox, in the same statement).
    INSERT INTO event (type, agent_id, task_id, data)
    SELECT 'credit.posted', ag.id, %(task_id)s,
           jsonb_build_object('transfer_id', e.transfer_id, 'type', %(taskhive_type)s::text, 'kind', %(kind)s::text,
                              'amount', e.amount, 'balance_after', e.balance_after, 'task_id', %(task_id)s::bigint,
                              'description', %(reason)s::text)
      FROM e
      JOIN account a ON a.id = e.account_id AND a.kind = 'operator_wallet'
      JOIN agent ag ON ag.operator_id = a.operator_id
)
SELECT transfer_id, account_id, balance_after FROM e
"""


async def post(connection: Connection, transfer: TransferRequest) -> tuple[int, dict[int, int]]:
    """Write the transfer and its entries in one statement; returns its id and each account's new balance.

    Entries are inserted in account id order (`domain.ledger.balanced` sorts them), so concurrent transfers
    lock accounts in the same order and cannot deadlock.
    """
    try:
        cursor = await connection.execute(_POST, _params(transfer))
        rows = await cursor.fetchall()  # in a pipeline, the statement's error comes with its result
    except errors.CheckViolation as error:
        if is_overdraft(error):
            raise Overdraft(str(error)) from error
        raise
    return rows[0][0], {account_id: balance for _, account_id, balance in rows}


def is_overdraft(error: errors.CheckViolation) -> bool:
    """Whether an entry would have taken a wallet or escrow below zero (the statement was refused)."""
    return error.diag.constraint_name == "ck_account_no_overdraft"


async def send(connection: Connection, transfer: TransferRequest) -> None:
    """Write the transfer without reading what it returns, so that it can go out in a batch with other writes (an
    overdraft fails the batch with a CheckViolation that `is_overdraft`)."""
    await connection.execute(_POST, _params(transfer))


def _params(transfer: TransferRequest) -> dict[str, Any]:
    return {
        "kind": transfer.kind.value,
        "taskhive_type": TASKHIVE_TYPE[transfer.kind],
        "reason": transfer.reason,
        "operator_id": transfer.operator_id,
        "agent_id": transfer.agent_id,
        "task_id": transfer.task_id,
        "accounts": [p.account_id for p in transfer.postings],
        "amounts": [p.amount for p in transfer.postings],
    }


def _to_account(row: Sequence[Any]) -> Account:
    return Account(
        id=row[0],
        kind=AccountKind(row[1]),
        operator_id=row[2],
        task_id=row[3],
        shard=row[4],
        balance=row[5],
        version=row[6],
    )


_ACCOUNT = "SELECT id, kind, operator_id, task_id, shard, balance, version FROM account"


async def wallet(connection: Connection, operator_id: int, *, for_update: bool = False) -> Account | None:
    lock = " FOR UPDATE" if for_update else ""
    cursor = await connection.execute(f"{_ACCOUNT} WHERE operator_id = %s{lock}", (operator_id,))
    row = await cursor.fetchone()
    return _to_account(row) if row else None


async def lock_accounts(connection: Connection, account_ids: Sequence[int]) -> dict[int, Account]:
    """Lock accounts in id order, the order every transfer's entries lock them in, so no two transactions wait on
    each other in a cycle."""
    cursor = await connection.execute(
        f"{_ACCOUNT} WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (sorted(set(account_ids)),)
    )
    return {row[0]: _to_account(row) for row in await cursor.fetchall()}


async def issuance_account(connection: Connection) -> int:
    """The platform issuance account (a singleton; platform revenue is several sub-accounts, see revenue_shard)."""
    cursor = await connection.execute("SELECT id FROM account WHERE kind = 'platform_issuance'")
    (account_id,) = await one_row(cursor)
    return int(account_id)


async def list_accounts(
    connection: Connection, *, after_id: int, limit: int, kind: AccountKind | None = None
) -> list[Account]:
    cursor = await connection.execute(
        f"{_ACCOUNT} WHERE id > %s AND (%s::text IS NULL OR kind = %s) ORDER BY id LIMIT %s",
        (after_id, kind and kind.value, kind and kind.value, limit),
    )
    return [_to_account(row) for row in await cursor.fetchall()]


async def history(connection: Connection, account_id: int, *, before_id: int | None, limit: int) -> list[HistoryEntry]:
    """An account's entries, newest first, keyset-paginated on the entry id."""
    cursor = await connection.execute(
        """
        SELECT e.id, e.transfer_id, e.amount, t.kind, t.reason, t.task_id, e.balance_after, e.created_at
          FROM entry e JOIN transfer t ON t.id = e.transfer_id
         WHERE e.account_id = %s AND (%s::bigint IS NULL OR e.id < %s)
         ORDER BY e.id DESC
         LIMIT %s
        """,
        (account_id, before_id, before_id, limit),
    )
    return [
        HistoryEntry(
            id=r[0],
            transfer_id=r[1],
            amount=r[2],
            kind=TransferKind(r[3]),
            reason=r[4],
            task_id=r[5],
            balance_after=r[6],
            created_at=r[7],
        )
        for r in await cursor.fetchall()
    ]


async def list_transfers(
    connection: Connection,
    *,
    before_id: int | None,
    limit: int,
    account_id: int | None = None,
    task_id: int | None = None,
    kind: str | None = None,
) -> list[TransferRecord]:
    """Transfers with their entries, newest first, filtered by account, task or kind."""
    cursor = await connection.execute(
        """
        SELECT t.id, t.kind, t.reason, t.operator_id, t.agent_id, t.task_id, t.created_at,
               array_agg(ARRAY[e.account_id, e.amount, e.balance_after] ORDER BY e.id)
          FROM transfer t JOIN entry e ON e.transfer_id = t.id
         WHERE (%(before)s::bigint IS NULL OR t.id < %(before)s)
           AND (%(kind)s::text IS NULL OR t.kind = %(kind)s)
           AND (%(task)s::bigint IS NULL OR t.task_id = %(task)s)
           AND (%(account)s::bigint IS NULL
                OR EXISTS (SELECT 1 FROM entry x WHERE x.transfer_id = t.id AND x.account_id = %(account)s))
         GROUP BY t.id
         ORDER BY t.id DESC
         LIMIT %(limit)s
        """,
        {"before": before_id, "kind": kind, "task": task_id, "account": account_id, "limit": limit},
    )
    return [
        TransferRecord(
            id=r[0],
            kind=TransferKind(r[1]),
            reason=r[2],
            operator_id=r[3],
            agent_id=r[4],
            task_id=r[5],
            created_at=r[6],
            entries=tuple(tuple(leg) for leg in r[7]),
        )
        for r in await cursor.fetchall()
    ]
