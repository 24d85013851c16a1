"""Wire types for wallets, credit history and ledger accounts."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from app.http.schemas.common import Timestamp
from app.services.credits import Statement
from domain.ledger import TASKHIVE_TYPE, Account, AccountKind, HistoryEntry, TransferKind, TransferRecord


class CreditTransactionOut(msgspec.Struct, kw_only=True):
    id: int
    amount: int
    type: str  # TaskHive's name: bonus, deposit, debit, ...
    kind: TransferKind  # Agora's precise transfer kind
    task_id: int | None
    description: str
    balance_after: int
    created_at: Timestamp

    @classmethod
    def of(cls, entry: HistoryEntry) -> CreditTransactionOut:
        return cls(
            id=entry.id,
            amount=entry.amount,
            type=TASKHIVE_TYPE.get(entry.kind, entry.kind.value),
            kind=entry.kind,
            task_id=entry.task_id,
            description=entry.reason,
            balance_after=entry.balance_after,
            created_at=entry.created_at,
        )


class CreditsOut(msgspec.Struct, kw_only=True):
    credit_balance: int
    escrow_held: int
    recent_transactions: list[CreditTransactionOut]

    @classmethod
    def of(cls, statement: Statement) -> CreditsOut:
        return cls(
            credit_balance=statement.balance,
            escrow_held=statement.escrow_held,
            recent_transactions=[CreditTransactionOut.of(e) for e in statement.entries],
        )


class CreditAdjustIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # 0 is refused by the service (app.services.credits) with its own message; `not` documents it.
    amount: Annotated[
        int,
        Meta(
            ge=-1_000_000_000,
            le=1_000_000_000,
            description="positive grants, negative debits (not 0)",
            extra_json_schema={"not": {"const": 0}},
        ),
    ]
    reason: Annotated[str, Meta(min_length=1, max_length=500)]


class CreditAdjustOut(msgspec.Struct, kw_only=True):
    transfer_id: int
    operator_id: int
    amount: int
    balance_after: int


class AccountOut(msgspec.Struct, kw_only=True):
    id: int
    kind: AccountKind
    operator_id: int | None
    task_id: int | None
    # Platform revenue is REVENUE_SHARDS sub-accounts (a task's fee goes to the one numbered task id mod
    # REVENUE_SHARDS); platform revenue is their sum. None for every other account.
    shard: int | None
    balance: int
    version: int

    @classmethod
    def of(cls, account: Account) -> AccountOut:
        return cls(
            id=account.id,
            kind=account.kind,
            operator_id=account.operator_id,
            task_id=account.task_id,
            shard=account.shard,
            balance=account.balance,
            version=account.version,
        )


class EntryOut(msgspec.Struct, kw_only=True):
    account_id: int
    amount: int
    balance_after: int


class TransferOut(msgspec.Struct, kw_only=True):
    id: int
    kind: TransferKind
    reason: str
    operator_id: int | None
    agent_id: int | None
    task_id: int | None
    created_at: Timestamp
    entries: list[EntryOut]

    @classmethod
    def of(cls, transfer: TransferRecord) -> TransferOut:
        return cls(
            id=transfer.id,
            kind=transfer.kind,
            reason=transfer.reason,
            operator_id=transfer.operator_id,
            agent_id=transfer.agent_id,
            task_id=transfer.task_id,
            created_at=transfer.created_at,
            entries=[EntryOut(account_id=a, amount=m, balance_after=b) for a, m, b in transfer.entries],
        )


class InvariantOut(msgspec.Struct, kw_only=True):
    violations: int
    description: str


class AuditOut(msgspec.Struct, kw_only=True):
    ok: bool
    violations: dict[str, int]
    invariants: dict[str, InvariantOut]
    entries: int
    ledger_hash: str
