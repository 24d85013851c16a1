"""The unit of work: one transaction on the request's connection, rolled back unless the use case commits.

    async with uow:
        ...                      # repositories on uow.connection
        await uow.commit()

When the request carries an Idempotency-Key, the HTTP layer attaches an `IdempotentCall` (see
`app.services.idempotency`). It claims the key inside this transaction before the use case runs, and the commit is
completed by the call once the response is rendered, so that the effect and its stored response commit together.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Protocol, TypeVar

from psycopg import AsyncPipeline

from app.repo import events as event_rows
from app.repo import transactions
from app.repo.connections import Connection, ConnectionLease, PoolSource, open_pool
from domain.errors import DomainError
from domain.events import Event, MatchRequest

T = TypeVar("T")


class TransactionHooks(Protocol):
    @property
    def savepoint(self) -> str | None:
        """A savepoint opened right after BEGIN, to which a business error rolls back (keeping the claim)."""
        ...

    async def on_begin(self, connection: Connection) -> None: ...

    def on_commit(self, closing: transactions.Closing | None) -> bool:
        """Return True when the hook takes over the final COMMIT (and sends `closing` with it)."""
        ...

    def on_business_error(self, error: DomainError) -> bool:
        """Return True when the hook keeps the transaction open to record the error."""
        ...


class UnitOfWork:
    def __init__(self, lease: ConnectionLease, hooks: TransactionHooks | None = None) -> None:
        self.lease = lease
        self.hooks = hooks
        self._connection: Connection | None = None
        self._active_hooks: TransactionHooks | None = None
        self._done = False

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            raise RuntimeError("the unit of work is not open: use `async with uow:`")
        return self._connection

    async def release_connection(self) -> None:
        """Give the request's connection back to the pool while waiting on something slow outside the database
        (a DNS lookup); the next statement takes one again."""
        if self._connection is not None:
            raise RuntimeError("a transaction is open on this connection")
        await self.lease.release()

    async def reader(self) -> Connection:
        """The request's connection outside any transaction, for a read that is a single statement."""
        return await self.lease.connection()

    async def __aenter__(self) -> UnitOfWork:
        if self._connection is not None:
            raise RuntimeError("a unit of work runs one transaction; open a new one")
        connection = await self.lease.connection()
        hooks, self.hooks = self.hooks, None  # the hooks belong to the request's first transaction only
        self._active_hooks = hooks
        await transactions.begin(connection, savepoint=hooks.savepoint if hooks else None)
        self._connection = connection
        self._done = False
        if hooks is not None:
            try:
                await hooks.on_begin(connection)
            except BaseException:
                await self._rollback()
                raise
        return self

    async def commit(self, closing: transactions.Closing | None = None) -> None:
        """Commit. `closing` issues statements that go out in the COMMIT's own round trip, after everything else:
        a row they lock (the platform's revenue account, which every settlement credits) stays locked only while
        PostgreSQL runs them and flushes the commit, not while this process waits on the network or other
        requests. They must not read their results (that would end the round trip there) and cannot fail on a
        business rule: nothing they do is checked before the response is rendered."""
        connection = self.connection
        hooks = self._active_hooks
        if hooks is None or not hooks.on_commit(closing):
            await transactions.commit(connection, closing=closing)
        # Otherwise the hook commits once the response is rendered, in one pipeline with the stored response.
        self._done = True

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._done:
                return
            hooks = self._active_hooks
            if isinstance(exc, DomainError) and hooks is not None and hooks.on_business_error(exc):
                await transactions.rollback_to(self.connection, hooks.savepoint or "")
            else:
                await self._rollback()
        finally:
            self._connection = None
            self._active_hooks = None

    async def publish(self, events: Sequence[Event], match: MatchRequest | None = None) -> None:
        """Write events into the outbox inside this transaction: they commit, or vanish, with the change."""
        await event_rows.insert(self.connection, events)
        if match is not None:
            await event_rows.insert_matches(self.connection, match)

    def batch(self) -> contextlib.AbstractAsyncContextManager[AsyncPipeline]:
        """Send the statements issued inside together, in one round trip (a psycopg pipeline)."""
        return transactions.batch(self.connection)

    @contextlib.asynccontextmanager
    async def savepoint(self, name: str = "item") -> AsyncIterator[None]:
        """A nested step that a business error undoes on its own, leaving the transaction usable (bulk requests)."""
        await transactions.savepoint(self.connection, name)
        try:
            yield
        except DomainError:
            await transactions.rollback_to(self.connection, name)
            raise
        await transactions.release(self.connection, name)

    async def _rollback(self) -> None:
        if self._connection is not None:
            await transactions.rollback(self._connection)


async def on_own_connection(
    url: str, use_case: Callable[[UnitOfWork], Awaitable[T]], *, name: str, statement_timeout_ms: int
) -> T:
    """Run one use case on a connection of its own (the command line, test setup): it commits for real."""
    pool = open_pool(url, min_size=1, max_size=1, statement_timeout_ms=statement_timeout_ms, name=name)
    await pool.open(wait=True)
    lease = ConnectionLease(PoolSource(pool))
    try:
        return await use_case(UnitOfWork(lease))
    finally:
        await lease.release()
        await pool.close()


def must_exist(row: T | None, what: str) -> T:
    """A row this transaction wrote, locked, or owns by a foreign key: reading it back cannot miss, so a miss is a
    bug (a 500), not a 404."""
    if row is None:
        raise RuntimeError(f"{what} is missing inside its own transaction")
    return row
