"""The credit ledger's rules: account kinds, transfer kinds and balanced postings.

Credits are integers. Every movement is a transfer of two or more postings that sum to zero; only the
platform issuance account may go below zero (it is where granted credits come from).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class AccountKind(StrEnum):
    OPERATOR_WALLET = "operator_wallet"
    TASK_ESCROW = "task_escrow"
    PLATFORM_REVENUE = "platform_revenue"
    PLATFORM_ISSUANCE = "platform_issuance"


# Platform revenue is split over this many sub-accounts (shards 0 .. REVENUE_SHARDS - 1), so that settlements of
# different tasks rarely lock the same cached balance row; platform revenue is their sum. The database holds
# exactly this many (migration 0008 creates them; the audit checks the count), so changing it takes a migration.
REVENUE_SHARDS = 16


def revenue_shard(task_id: int) -> int:
    """The revenue sub-account a task's platform fee is credited to.

    Task ids are sequential, so consecutive tasks (the ones most likely to settle at the same time) land on
    different shards, and each shard takes every REVENUE_SHARDS-th task. SQL that must agree (the minimal bench
    transaction) computes `task_id % REVENUE_SHARDS` with the constant passed in.
    """
    return task_id % REVENUE_SHARDS


class TransferKind(StrEnum):
    OPERATOR_BONUS = "operator_bonus"
    AGENT_BONUS = "agent_bonus"
    ADMIN_GRANT = "admin_grant"
    ADMIN_DEBIT = "admin_debit"
    ESCROW_HOLD = "escrow_hold"  # a task's budget, from the poster's wallet into the task's escrow
    SETTLEMENT = "settlement"  # an accepted deliverable: escrow to worker, platform fee and poster's change
    REFUND = "refund"  # a cancelled or expired task: escrow back to the poster


# The `type` TaskHive clients read on a credit history row.
TASKHIVE_TYPE: dict[TransferKind, str] = {
    TransferKind.OPERATOR_BONUS: "bonus",
    TransferKind.AGENT_BONUS: "bonus",
    TransferKind.ADMIN_GRANT: "deposit",
    TransferKind.ADMIN_DEBIT: "debit",
    TransferKind.ESCROW_HOLD: "escrow",
    TransferKind.SETTLEMENT: "payment",
    TransferKind.REFUND: "refund",
}


class UnbalancedTransfer(ValueError):
    """A programming error: postings must sum to zero and touch at least two accounts."""


@dataclass(frozen=True, slots=True)
class Posting:
    account_id: int
    amount: int  # signed: positive credits the account, negative debits it


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferRequest:
    kind: TransferKind
    reason: str
    postings: tuple[Posting, ...]
    operator_id: int | None = None
    agent_id: int | None = None
    task_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    id: int
    kind: AccountKind
    operator_id: int | None
    task_id: int | None
    shard: int | None  # a platform revenue sub-account's number (revenue_shard), None for every other account
    balance: int
    version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """One entry of an account's history, as an operator or agent sees it."""

    id: int
    transfer_id: int
    amount: int
    kind: TransferKind
    reason: str
    task_id: int | None
    balance_after: int
    created_at: datetime


def balanced(kind: TransferKind, reason: str, postings: Iterable[Posting], **refs: int | None) -> TransferRequest:
    """Build a transfer whose postings are merged per account, sorted by account id and checked to balance.

    Sorting fixes the order in which PostgreSQL locks the accounts, so two transfers never deadlock.
    """
    merged: dict[int, int] = {}
    for posting in postings:
        merged[posting.account_id] = merged.get(posting.account_id, 0) + posting.amount
    legs = tuple(Posting(account, amount) for account, amount in sorted(merged.items()) if amount != 0)
    if len(legs) < 2 or sum(leg.amount for leg in legs) != 0:
        raise UnbalancedTransfer(f"{kind}: postings {legs} do not balance")
    return TransferRequest(kind=kind, reason=reason, postings=legs, **refs)


def move(
    kind: TransferKind, reason: str, *, source: int, destination: int, amount: int, **refs: int | None
) -> TransferRequest:
    """Move `amount` credits from `source` to `destination`."""
    if amount <= 0:
        raise UnbalancedTransfer(f"{kind}: amount must be positive, got {amount}")
    return balanced(kind, reason, (Posting(source, -amount), Posting(destination, amount)), **refs)


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferRecord:
    id: int
    kind: TransferKind
    reason: str
    operator_id: int | None
    agent_id: int | None
    task_id: int | None
    created_at: datetime
    entries: tuple[tuple[int, int, int], ...]  # (account_id, amount, balance_after)
