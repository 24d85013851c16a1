"""The unit of work: one transaction on the request's connection, rolled back unless the use case commits.

    async with uow:
        ...                      # repositories on uow.connection
        await uow.commit(result)  # COMMIT

`result` is what the use case answers. When the request carries an Idempotency-Key, the unit of work carries its
`IdempotentCall` (app.services.idempotency): the key is claimed right after BEGIN, and `commit` renders the result
as the route answers it and stores it in the COMMIT's own round trip, so that the effect and its stored response
commit together. A business error leaving the block is stored the same way (the effect undone), and the client is
sent the stored response.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, TypeVar

from psycopg import AsyncPipeline

from app.repo import events as event_rows
from app.repo import transactions
from app.repo.connections import Connection, ConnectionLease, PoolSource, Query, Viewer, open_pool, run

__all__ = ["UnitOfWork", "Viewer", "must_exist", "on_own_connection"]
from domain.errors import DomainError
from domain.events import Event, MatchRequest

if TYPE_CHECKING:  # idempotency seals with app.services.sealing, which runs its own units of work
    from app.services.auth import DeferredAuth
    from app.services.idempotency import IdempotentCall

T = TypeVar("T")
_KEPT = "kept"  # the savepoint `keep_written` takes when no Idempotency-Key stores the answer


class CommitObserver(Protocol):
    """Told around every COMMIT a request's unit of work sends. Production installs none; the crash tests install
    one (tests/fault_server.py) that ends the process at a chosen point."""

    def before_commit(self) -> None: ...

    def after_commit(self) -> None: ...


class UnitOfWork:
    def __init__(
        self,
        lease: ConnectionLease,
        idempotency: IdempotentCall | None = None,
        *,
        observer: CommitObserver | None = None,
        deferred_auth: DeferredAuth | None = None,
        viewer: Viewer | None = None,
    ) -> None:
        self.lease = lease
        # Who reads, for reads that depend on it (directed tasks, a poster's metadata): the caller, once known.
        self.viewer = viewer
        self.idempotency = idempotency
        self.observer = observer
        self.deferred_auth = deferred_auth  # decided by the first read (`read`), or before any other statement
        self._connection: Connection | None = None
        self._call: IdempotentCall | None = None  # the open transaction's
        self._done = False
        self._kept = False  # what was written before `keep_written` commits even on a business error

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
        await self._authenticate()
        return await self.lease.connection()

    async def read(self, query: Query[T]) -> T:
        """Run a read outside any transaction, with the request's deferred authentication in the same statement if
        it has one: a refused caller gets the refusal, raised, and the database reads nothing for it."""
        deferred, self.deferred_auth = self.deferred_auth, None
        if deferred is None:
            return await run(await self.lease.connection(), query, self.viewer)
        try:
            return await deferred.run(self.lease, query)
        finally:
            self._viewed_by(deferred)

    async def _authenticate(self) -> None:
        deferred, self.deferred_auth = self.deferred_auth, None
        if deferred is not None:
            try:
                await deferred.resolve(self.lease)
            finally:
                self._viewed_by(deferred)

    def _viewed_by(self, deferred: DeferredAuth) -> None:
        if isinstance(deferred.outcome, tuple):
            principal = deferred.outcome[0]
            self.viewer = Viewer(principal.agent_id, principal.operator_id)

    async def __aenter__(self) -> UnitOfWork:
        if self._connection is not None:
            raise RuntimeError("a unit of work runs one transaction; open a new one")
        await self._authenticate()
        connection = await self.lease.connection()
        call, self.idempotency = self.idempotency, None  # the key belongs to the request's first transaction only
        self._connection, self._call, self._done, self._kept = connection, call, False, False
        try:
            if call is None:
                async with transactions.begin(connection):
                    pass
            else:
                async with transactions.begin(connection, savepoint=call.savepoint):  # the claim in the same trip
                    sent = await call.send_claim(connection)
                await call.check_claim(sent)
        except BaseException:
            await self._rollback()
            self._connection = self._call = None
            raise
        return self

    async def commit(self, result: object = None) -> None:
        """COMMIT. With an Idempotency-Key, `result` (what the use case returns) is rendered and stored by this
        same commit."""
        async with self.committing(result):
            pass

    @contextlib.asynccontextmanager
    async def committing(self, result: object = None) -> AsyncIterator[None]:
        """The statements sent inside the block, then the COMMIT, in one round trip: for writes whose answers the
        use case does not need (it has decided, `result` is known), sent with the commit instead of before it.
        With an Idempotency-Key, `result` is rendered and stored by this same commit."""
        connection = self.connection
        if self.observer is not None:
            self.observer.before_commit()
        if self._call is not None:
            async with self._call.committing(connection, result):
                yield
        else:
            async with transactions.committing(connection):
                yield
        self._done = True
        if self.observer is not None:
            self.observer.after_commit()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._done:
                return
            if isinstance(exc, DomainError) and self._call is not None:
                # The error is the request's answer: stored with the key (the effect undone), then sent as stored.
                raise await self._call.commit_error(self.connection, exc) from exc
            if isinstance(exc, DomainError) and self._kept:
                await transactions.rollback_to(self.connection, _KEPT)
                await self._commit_kept()
                return  # the error goes on to the caller
            await self._rollback()
        finally:
            self._connection = None
            self._call = None
            self._kept = False

    async def keep_written(self) -> None:
        """What this transaction has written so far commits whatever the use case then answers, a business error
        included: for changes that time made due and the request found on its way (a task past its expiry expires,
        and stays expired, even for the bid that found it so and is refused). With an Idempotency-Key, the error is
        stored by that same commit."""
        if self._call is not None:
            # commit_error rolls back to the newest savepoint of this name, which is now this one.
            await transactions.savepoint(self.connection, self._call.savepoint)
        else:
            await transactions.savepoint(self.connection, _KEPT)
            self._kept = True

    async def _commit_kept(self) -> None:
        if self.observer is not None:
            self.observer.before_commit()
        async with transactions.committing(self.connection):
            pass
        if self.observer is not None:
            self.observer.after_commit()

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
