"""Idempotency-Key: one effect per key, the first response replayed to every retry for 24 hours.

The key is claimed inside the use case's own transaction (a transaction-scoped advisory lock, then a read of any
stored response), and the rendered response is stored in that same transaction just before it commits. So a
crash either loses both the effect and the record (the retry runs afresh) or keeps both (the retry is replayed).
Business errors (4xx raised by the use case) are stored too, after rolling back to a savepoint taken just after
the claim; validation failures, auth failures and 5xx are never stored, and leave the key free.

A stored body is sealed to its principal and key (it may carry a key shown once, or a webhook secret): opened only
to be replayed, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum, auto

from app.crypto import KeyRing
from app.repo import idempotency as records
from app.repo import transactions
from app.repo.connections import Connection
from app.repo.idempotency import StoredResponse
from app.services import sealing
from domain.errors import Conflict, DomainError, Unprocessable

MAX_KEY_LENGTH = 255


class IdempotencyKeyInFlight(Conflict):
    code = "IDEMPOTENCY_KEY_IN_FLIGHT"

    def __init__(self) -> None:
        super().__init__(
            "A request with this Idempotency-Key is still being processed",
            "Wait a second and retry with the same key; you will get the first request's response.",
        )


class IdempotencyKeyMismatch(Unprocessable):
    code = "IDEMPOTENCY_KEY_MISMATCH"

    def __init__(self) -> None:
        super().__init__(
            "This Idempotency-Key was already used with a different request (method, path or body)",
            "Use a new Idempotency-Key for a different request; reuse a key only to retry the same request.",
        )


class IdempotentReplay(Exception):
    """The key already has a stored response: send it instead of running the use case."""

    def __init__(self, stored: StoredResponse) -> None:
        super().__init__("idempotent replay")
        self.stored = stored


@dataclass(frozen=True, slots=True)
class IdempotencyRequest:
    principal: str
    key: str
    method: str
    path: str
    fingerprint: str
    ttl_hours: int


class _State(Enum):
    WAITING = auto()  # no transaction opened yet
    CLAIMED = auto()  # lock held, the use case is running
    COMMITTED = auto()  # the use case committed; our COMMIT waits for the response
    FAILED = auto()  # a business error; rolled back to the savepoint, waits for the error response
    FINISHED = auto()


class IdempotentCall:
    """UnitOfWork hooks for a request that carries an Idempotency-Key."""

    savepoint = "idempotent_effect"

    def __init__(self, request: IdempotencyRequest, keyring: KeyRing | None = None) -> None:
        self.request = request
        self._keyring = keyring  # None: the ring the application bound for this request
        self._state = _State.WAITING
        self._connection: Connection | None = None
        self._closing: transactions.Closing | None = None

    @property
    def awaiting_response(self) -> bool:
        """True while a transaction is open that only the rendered response can finish."""
        return self._state in (_State.COMMITTED, _State.FAILED)

    async def on_begin(self, connection: Connection) -> None:
        claim = await records.claim(connection, self.request.principal, self.request.key)
        if not claim.locked:
            raise IdempotencyKeyInFlight()
        if claim.stored is not None:
            raise self._replay(claim.stored)
        self._connection = connection
        self._state = _State.CLAIMED

    def on_commit(self, closing: transactions.Closing | None) -> bool:
        self._state = _State.COMMITTED
        self._closing = closing
        return True

    def on_business_error(self, error: DomainError) -> bool:
        self._state = _State.FAILED
        return True

    async def finish(self, status: int, content_type: str, body: bytes) -> Exception | None:
        """Store the response and commit.

        Returns None when the response stands, else what to send instead: an `IdempotentReplay` of the response
        that won the key, or an error.
        """
        if not self.awaiting_response or self._connection is None:
            return None
        committed = self._state is _State.COMMITTED
        connection, self._state = self._connection, _State.FINISHED
        if status >= 500 or (committed and status >= 400):
            # The response failed after the use case: keep neither the effect nor the key.
            await transactions.rollback(connection)
            return None
        stored = StoredResponse(self.request.fingerprint, status, content_type, self._ring().seal(body, self._context))
        won = await records.store_and_commit(
            connection,
            principal=self.request.principal,
            key=self.request.key,
            method=self.request.method,
            path=self.request.path,
            response=stored,
            ttl_hours=self.request.ttl_hours,
            closing=self._closing if committed else None,
        )
        if won:
            return None
        # A concurrent first request committed between our lock and our read: its response stands, ours is undone.
        await transactions.rollback(connection)
        winner = await records.find(connection, self.request.principal, self.request.key)
        return IdempotencyKeyInFlight() if winner is None else self._replay(winner)

    async def abandon(self) -> None:
        """Roll back a transaction that no response will finish (the client went away, the server failed)."""
        if self.awaiting_response and self._connection is not None:
            self._state = _State.FINISHED
            await transactions.rollback(self._connection)

    def _replay(self, stored: StoredResponse) -> Exception:
        if stored.fingerprint != self.request.fingerprint:
            return IdempotencyKeyMismatch()
        return IdempotentReplay(replace(stored, body=self._ring().open(stored.body, self._context)))

    @property
    def _context(self) -> str:
        return sealing.idempotency_context(self.request.principal, self.request.key)

    def _ring(self) -> KeyRing:
        return self._keyring if self._keyring is not None else sealing.current()


async def delete_expired(connection: Connection) -> int:
    """Remove records past their expiry (by database time); returns how many went."""
    removed = 0
    while True:
        batch = await records.delete_expired(connection)
        removed += batch
        if batch == 0:
            return removed
