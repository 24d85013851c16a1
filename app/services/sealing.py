"""Sealing secrets at rest with the data key ring: where each value is bound, the request's ring, and the passes
that re-seal what is stored (after migration 0006, and when keys rotate).

Repositories store and return sealed bytes; the services seal before writing and open after reading, with the
ring the application binds for each request (`bound`), or one they are handed (the delivery worker, the CLI).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

from app.crypto import VERSION, KeyRing
from app.repo import sealed as sealed_rows
from app.repo.connections import ConnectionLease
from app.repo.sealed import SEALED_COLUMNS, UNSEALED_MARK, SealedColumn, StoredValue
from app.services.uow import UnitOfWork

BATCH = 500

_request_keyring: ContextVar[KeyRing | None] = ContextVar("agora_keyring", default=None)


@contextlib.contextmanager
def bound(keyring: KeyRing) -> Iterator[None]:
    """Make `keyring` the one `current()` returns while the block runs (the application binds its own around
    every request, so routes need not pass it to each service)."""
    token = _request_keyring.set(keyring)
    try:
        yield
    finally:
        _request_keyring.reset(token)


def current() -> KeyRing:
    keyring = _request_keyring.get()
    if keyring is None:
        raise RuntimeError("no key ring is bound: run the use case inside sealing.bound(keyring)")
    return keyring


def context(purpose: str, *parts: str) -> str:
    """Where a value is stored, as the additional data it is sealed to. (No part of an idempotency principal
    contains "|", and webhook ids are digits, so the joined form is unambiguous.)"""
    return f"{purpose}:{'|'.join(parts)}"


def idempotency_context(principal: str, key: str) -> str:
    return context("idempotency_key", principal, key)


def webhook_context(webhook_id: int) -> str:
    return context("webhook", str(webhook_id))


def _context_of(column: SealedColumn, value: StoredValue) -> str:
    return context(column.purpose, *value.context_values)


def _plaintext(keyring: KeyRing, column: SealedColumn, value: StoredValue) -> bytes:
    if value.stored[:1] == UNSEALED_MARK:
        return value.stored[1:]
    return keyring.open(value.stored, _context_of(column, value))


@dataclass(frozen=True, slots=True)
class ResealReport:
    resealed: dict[str, int]  # by column
    census: dict[str, dict[str, int]] = field(default_factory=dict)  # by column, then key id (or "unsealed")

    @property
    def total(self) -> int:
        return sum(self.resealed.values())

    def key_ids_in_use(self) -> set[str]:
        return {key for counts in self.census.values() for key in counts}


async def seal_unsealed(lease: ConnectionLease, keyring: KeyRing) -> ResealReport:
    """Seal the plaintext that migration 0006 marked (a no-op once done: `agora migrate`, `serve` and `worker` run
    it after migrating)."""
    return await _reseal(lease, keyring, header=None)


async def reseal_all(lease: ConnectionLease, keyring: KeyRing) -> ResealReport:
    """Re-seal every value not sealed under the ring's first key (a rotation's middle step), then count what each
    key still seals: a key id absent from the census may be removed from the ring."""
    header = bytes([VERSION]) + bytes.fromhex(keyring.primary_id)
    report = await _reseal(lease, keyring, header=header)
    return ResealReport(report.resealed, await census(lease))


async def census(lease: ConnectionLease) -> dict[str, dict[str, int]]:
    connection = await lease.connection()
    return {column.name: await sealed_rows.census(connection, column) for column in SEALED_COLUMNS}


async def _reseal(lease: ConnectionLease, keyring: KeyRing, *, header: bytes | None) -> ResealReport:
    uow = UnitOfWork(lease)
    resealed: dict[str, int] = {}
    for column in SEALED_COLUMNS:
        resealed[column.name], after = 0, 0
        while True:
            values = await sealed_rows.batch(
                await uow.reader(), column, after_id=after, limit=BATCH, unless_header=header
            )
            if not values:
                break
            changes = [
                (v.row_id, v.stored, keyring.seal(_plaintext(keyring, column, v), _context_of(column, v)))
                for v in values
            ]
            # One durable transaction a batch: the old key may be dropped right after this pass returns.
            async with uow:
                resealed[column.name] += await sealed_rows.replace(uow.connection, column, changes)
                await uow.commit()
            after = values[-1].row_id
    return ResealReport(resealed)
