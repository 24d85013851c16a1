"""The ledger: transfers and entries. Balances move only through entries (a trigger applies each one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from psycopg import errors

from app.repo.connections import Connection, one_row
from app.repo.rows import Column, row_type
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


class _Entry(NamedTuple):
    """An entry as `post` writes it: its transfer, its account and that account's balance after it."""

    transfer_id: int
    account_id: int
    balance_after: int


_ENTRY = row_type(_Entry, transfer_id="e.transfer_id", account_id="e.account_id", balance_after="e.balance_after")

_POST = f"""
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
    -- Every agent of an operator whose wallet moved hears of it (the outbox, in the same statement); the task's
    -- poster agent with the task's metadata echoed, as in every event of the poster's side (domain.events.addressed).
    INSERT INTO event (type, agent_id, task_id, data)
    SELECT 'credit.posted', ag.id, %(task_id)s,
           jsonb_build_object('transfer_id', e.transfer_id, 'type', %(taskhive_type)s::text, 'kind', %(kind)s::text,
                              'amount', e.amount, 'balance_after', e.balance_after, 'task_id', %(task_id)s::bigint,
                              'description', %(reason)s::text)
           || CASE WHEN t.metadata IS NOT NULL THEN jsonb_build_object('metadata', t.metadata) ELSE '{{}}' END
      FROM e
      JOIN account a ON a.id = e.account_id AND a.kind = 'operator_wallet'
      JOIN agent ag ON ag.operator_id = a.operator_id
      LEFT JOIN task t ON t.id = %(task_id)s AND t.poster_agent_id = ag.id
)
SELECT {_ENTRY.columns} FROM e
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
    entries = _ENTRY.read_all(rows)
    return entries[0].transfer_id, {entry.account_id: entry.balance_after for entry in entries}


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


_ACCOUNT = row_type(
    Account,
    id="a.id",
    kind=Column("a.kind", AccountKind),
    operator_id="a.operator_id",
    task_id="a.task_id",
    shard="a.shard",
    balance="a.balance",
    version="a.version",
)
_SELECT_ACCOUNT = f"SELECT {_ACCOUNT.columns} FROM account a"


async def wallet(connection: Connection, operator_id: int, *, for_update: bool = False) -> Account | None:
    lock = " FOR UPDATE" if for_update else ""
    cursor = await connection.execute(f"{_SELECT_ACCOUNT} WHERE a.operator_id = %s{lock}", (operator_id,))
    row = await cursor.fetchone()
    return _ACCOUNT.read(row, 0) if row else None


async def lock_accounts(connection: Connection, account_ids: Sequence[int]) -> dict[int, Account]:
    """Lock accounts in id order, the order every transfer's entries lock them in, so no two transactions wait on
    each other in a cycle."""
    cursor = await connection.execute(
        f"{_SELECT_ACCOUNT} WHERE a.id = ANY(%s) ORDER BY a.id FOR UPDATE", (sorted(set(account_ids)),)
    )
    return {account.id: account for account in _ACCOUNT.read_all(await cursor.fetchall())}


async def issuance_account(connection: Connection) -> int:
    """The platform issuance account (a singleton; platform revenue is several sub-accounts, see revenue_shard)."""
    cursor = await connection.execute("SELECT id FROM account WHERE kind = 'platform_issuance'")
    (account_id,) = await one_row(cursor)
    return int(account_id)


async def list_accounts(
    connection: Connection, *, after_id: int, limit: int, kind: AccountKind | None = None
) -> list[Account]:
    cursor = await connection.execute(
        f"{_SELECT_ACCOUNT} WHERE a.id > %s AND (%s::text IS NULL OR a.kind = %s) ORDER BY a.id LIMIT %s",
        (after_id, kind and kind.value, kind and kind.value, limit),
    )
    return _ACCOUNT.read_all(await cursor.fetchall())


_HISTORY_ENTRY = row_type(
    HistoryEntry,
    id="e.id",
    transfer_id="e.transfer_id",
    amount="e.amount",
    kind=Column("t.kind", TransferKind),
    reason="t.reason",
    task_id="t.task_id",
    balance_after="e.balance_after",
    created_at="e.created_at",
)


async def history(connection: Connection, account_id: int, *, before_id: int | None, limit: int) -> list[HistoryEntry]:
    """An account's entries, newest first, keyset-paginated on the entry id."""
    cursor = await connection.execute(
        f"""
        SELECT {_HISTORY_ENTRY.columns}
          FROM entry e JOIN transfer t ON t.id = e.transfer_id
         WHERE e.account_id = %s AND (%s::bigint IS NULL OR e.id < %s)
         ORDER BY e.id DESC
         LIMIT %s
        """,
        (account_id, before_id, before_id, limit),
    )
    return _HISTORY_ENTRY.read_all(await cursor.fetchall())


_TRANSFER = row_type(
    TransferRecord,
    id="t.id",
    kind=Column("t.kind", TransferKind),
    reason="t.reason",
    operator_id="t.operator_id",
    agent_id="t.agent_id",
    task_id="t.task_id",
    created_at="t.created_at",
    entries=Column(
        "array_agg(ARRAY[e.account_id, e.amount, e.balance_after] ORDER BY e.id)",
        lambda legs: tuple(tuple(leg) for leg in legs),
    ),
)


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
        f"""
        SELECT {_TRANSFER.columns}
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
    return _TRANSFER.read_all(await cursor.fetchall())
