"""Credits: bonuses and admin grants from platform issuance, wallet statements."""

from __future__ import annotations

from dataclasses import dataclass

from app.repo import ledger, tasks
from app.repo.connections import Connection
from app.services.uow import UnitOfWork
from domain.errors import InsufficientCredits, NotFound, Unprocessable
from domain.ledger import HistoryEntry, TransferKind, move


@dataclass(frozen=True, slots=True)
class Posted:
    transfer_id: int
    amount: int
    balance_after: int


@dataclass(frozen=True, slots=True)
class Statement:
    balance: int
    escrow_held: int
    entries: list[HistoryEntry]


def operator_not_found(operator_id: int) -> NotFound:
    return NotFound(
        f"Operator {operator_id} not found",
        "List operators' wallets with GET /api/v1/admin/accounts.",
        code="OPERATOR_NOT_FOUND",
    )


async def issue(
    connection: Connection,
    *,
    wallet_id: int,
    amount: int,
    kind: TransferKind,
    reason: str,
    **refs: int | None,
) -> Posted:
    """Move credits between platform issuance and a wallet: positive grants, negative debits."""
    issuance = await ledger.issuance_account(connection)
    source, destination = (issuance, wallet_id) if amount > 0 else (wallet_id, issuance)
    transfer_id, balances = await ledger.post(
        connection, move(kind, reason, source=source, destination=destination, amount=abs(amount), **refs)
    )
    return Posted(transfer_id, amount, balances[wallet_id])


async def adjust_operator(uow: UnitOfWork, *, operator_id: int, amount: int, reason: str) -> Posted:
    """An admin grant (amount > 0) or debit (amount < 0); a debit never takes the wallet below zero."""
    if amount == 0:
        raise Unprocessable(
            "Invalid field 'amount': must not be 0",
            "Send a positive amount to grant or a negative one to debit.",
            code="VALIDATION_ERROR",
        )
    async with uow:
        found = await ledger.wallet(uow.connection, operator_id)
        if found is None:
            raise operator_not_found(operator_id)
        issuance = await ledger.issuance_account(uow.connection)
        # Lock both sides in id order before reading the balance the check depends on.
        wallet = (await ledger.lock_accounts(uow.connection, [issuance, found.id]))[found.id]
        if amount < 0 and wallet.balance + amount < 0:
            raise InsufficientCredits(
                balance=wallet.balance,
                needed=-amount,
                suggestion=f"Debit at most {wallet.balance} credits: a debit never takes a wallet below zero.",
            )
        kind = TransferKind.ADMIN_GRANT if amount > 0 else TransferKind.ADMIN_DEBIT
        posted = await issue(
            uow.connection, wallet_id=wallet.id, amount=amount, kind=kind, reason=reason, operator_id=operator_id
        )
        await uow.commit(posted)
    return posted


async def statement(uow: UnitOfWork, *, operator_id: int, before_id: int | None, limit: int) -> Statement:
    """The wallet's balance, the credits it has in escrow, and a page of its history (newest first)."""
    async with uow:
        wallet = await ledger.wallet(uow.connection, operator_id)
        if wallet is None:
            raise operator_not_found(operator_id)
        entries = await ledger.history(uow.connection, wallet.id, before_id=before_id, limit=limit)
        held = await tasks.escrow_held(uow.connection, operator_id)
        await uow.commit()
    return Statement(balance=wallet.balance, escrow_held=held, entries=entries)
