"""Idempotency-Key: one effect per key, the first response replayed to every retry for 24 hours.

The key is claimed inside the use case's own transaction (a transaction-scoped advisory lock, then a read of any
stored response), and the unit of work's commit renders the response and stores it in the COMMIT's own round trip.
So a crash either loses both the effect and the record (the retry runs afresh) or keeps both (the retry is
replayed). Business errors (4xx raised by the use case) are stored too, after rolling back to a savepoint taken just
after the claim; validation failures, auth failures and 5xx are never stored, and leave the key free.

A stored body is sealed to its principal and key (it may carry a key shown once, or a webhook secret): opened only
to be replayed, byte for byte.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

from psycopg import errors

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
    """Send this stored response: a retry's replay (`replayed`), or a first request's business error as its commit
    stored it (the first answer and every replay are the same bytes)."""

    def __init__(self, stored: StoredResponse, *, replayed: bool = True) -> None:
        super().__init__("idempotent replay")
        self.stored = stored
        self.replayed = replayed


@dataclass(frozen=True, slots=True)
class IdempotencyRequest:
    principal: str
    key: str
    method: str
    path: str
    fingerprint: str
    ttl_hours: int
    success_status: int  # the route's status for a result (201 for a creation)


@dataclass(frozen=True, slots=True)
class RenderedError:
    status: int
    content_type: str
    body: bytes


#: Renders a use case's result as the response body (the route's, set through `IdempotentCall.answer_with`).
RenderResult = Callable[[Any], bytes]
#: Renders a business error as its response (the HTTP layer's envelope and status).
RenderError = Callable[[DomainError], RenderedError]

_JSON = "application/json"


class IdempotentCall:
    """The Idempotency-Key of a request, carried by its unit of work: claimed in the transaction's first round trip,
    and stored by its commit (a result or a business error), in that commit's own round trip."""

    savepoint = "idempotent_effect"

    def __init__(self, request: IdempotencyRequest, render_error: RenderError, keyring: KeyRing | None = None) -> None:
        self.request = request
        self._render_error = render_error
        self._render_result: RenderResult | None = None
        self._keyring = keyring  # None: the ring the application bound for this request

    def answer_with(self, render: RenderResult) -> None:
        """Say how the result is rendered; the route does, before it runs the use case."""
        self._render_result = render

    async def send_claim(self, connection: Connection) -> records.SentClaim:
        """Take the key, in the round trip that opens the transaction (`check_claim` reads the answer)."""
        return await records.send_claim(connection, self.request.principal, self.request.key)

    async def check_claim(self, sent: records.SentClaim) -> None:
        """Raise when the key is taken by a request still running, or already answered."""
        claim = await records.read_claim(sent)
        if not claim.locked:
            raise IdempotencyKeyInFlight()
        if claim.stored is not None:
            raise self._replay(claim.stored)

    def committing(self, connection: Connection, result: object) -> AbstractAsyncContextManager[None]:
        """The statements the block sends, then the rendered result's store and COMMIT, in one round trip."""
        if self._render_result is None:
            raise RuntimeError("the route runs a use case under an Idempotency-Key without saying how to render it")
        return self._storing(connection, self.request.success_status, _JSON, self._render_result(result))

    async def commit_error(self, connection: Connection, error: DomainError) -> IdempotentReplay:
        """Undo the effect (back to the savepoint after the claim), store the error's response and COMMIT; returns
        the stored response, which is what the client is sent."""
        await transactions.rollback_to(connection, self.savepoint)
        rendered = self._render_error(error)
        async with self._storing(connection, rendered.status, rendered.content_type, rendered.body):
            pass
        return IdempotentReplay(
            StoredResponse(self.request.fingerprint, rendered.status, rendered.content_type, rendered.body),
            replayed=False,
        )

    @asynccontextmanager
    async def _storing(
        self, connection: Connection, status: int, content_type: str, body: bytes
    ) -> AsyncIterator[None]:
        stored = StoredResponse(self.request.fingerprint, status, content_type, self._ring().seal(body, self._context))
        try:
            async with connection.pipeline():
                yield
                await records.send_store_and_commit(
                    connection,
                    principal=self.request.principal,
                    key=self.request.key,
                    method=self.request.method,
                    path=self.request.path,
                    response=stored,
                    ttl_hours=self.request.ttl_hours,
                )
        except errors.UniqueViolation as error:
            if not records.lost_race(error):
                raise
        else:
            return
        # A concurrent first request committed between our lock and our read: its response stands, ours is undone.
        await transactions.rollback(connection)
        winner = await records.find(connection, self.request.principal, self.request.key)
        raise IdempotencyKeyInFlight() if winner is None else self._replay(winner)

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
