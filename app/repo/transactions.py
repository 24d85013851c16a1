"""Transaction control statements, issued on behalf of the unit of work: the same in tests as in production
(tests isolate by database, not by wrapping a request's transaction in their own)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from psycopg import AsyncPipeline

from app.repo.connections import Connection
from app.repo.events import NOTIFY_CHANNEL


@asynccontextmanager
async def begin(connection: Connection, *, savepoint: str | None = None) -> AsyncIterator[None]:
    """Open the transaction (and, when `savepoint` is given, a savepoint inside it); the statements the block sends
    go out with it, in one round trip (a pipeline), answered when the block ends."""
    async with connection.pipeline():
        await connection.execute("BEGIN")
        if savepoint:
            await connection.execute(f"SAVEPOINT {savepoint}")
        yield


CHECK_DEFERRED_CONSTRAINTS = "SET CONSTRAINTS ALL IMMEDIATE"


def batch(connection: Connection) -> AbstractAsyncContextManager[AsyncPipeline]:
    """Statements executed inside go out together and are answered in one round trip."""
    return connection.pipeline()


#: Sent right after every COMMIT, as its own tiny transaction: event readers and delivery workers wake up (the
#: outbox stays the truth; they also poll). Inside the business transaction a NOTIFY would make every commit queue
#: on PostgreSQL's notify lock.
WAKE_LISTENERS = f"NOTIFY {NOTIFY_CHANNEL}"


async def send_commit(connection: Connection) -> None:
    """COMMIT and wake the listeners: statements for the caller's pipeline.

    Never prepared: when a statement before them fails, the pipeline skips them, and psycopg (3.3) can then record
    a statement it was preparing there as prepared although the server never saw it; that connection's next COMMIT
    would fail with "prepared statement does not exist". These two run after every write, so they would be the
    ones to reach the preparing threshold there, and preparing them gains nothing."""
    await connection.execute("COMMIT", prepare=False)
    await connection.execute(WAKE_LISTENERS, prepare=False)


@asynccontextmanager
async def committing(connection: Connection) -> AsyncIterator[None]:
    """The statements the block sends, then COMMIT, in one round trip (a pipeline)."""
    async with connection.pipeline():
        yield
        await send_commit(connection)


async def rollback(connection: Connection) -> None:
    if connection.closed:
        return
    await connection.execute("ROLLBACK")


async def rollback_to(connection: Connection, savepoint: str) -> None:
    await connection.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")


async def savepoint(connection: Connection, name: str) -> None:
    await connection.execute(f"SAVEPOINT {name}")


async def release(connection: Connection, name: str) -> None:
    await connection.execute(f"RELEASE SAVEPOINT {name}")


async def repeatable_read(connection: Connection) -> None:
    """Give the transaction one snapshot for all its statements (must come before its first query)."""
    await connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
