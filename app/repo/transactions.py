"""Transaction control statements, issued on behalf of the unit of work: the same in tests as in production
(tests isolate by database, not by wrapping a request's transaction in their own)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from psycopg import AsyncPipeline

from app.repo.connections import Connection
from app.repo.events import NOTIFY_CHANNEL


async def begin(connection: Connection, *, savepoint: str | None = None) -> None:
    """Open the transaction and, when `savepoint` is given, a savepoint inside it, in one round trip."""
    # Pool connections default to asynchronous commit (see connections.open_pool); a use case's commit is durable.
    statements = ["BEGIN", "SET LOCAL synchronous_commit TO on"]
    if savepoint:
        statements.append(f"SAVEPOINT {savepoint}")
    await connection.execute("; ".join(statements))


CHECK_DEFERRED_CONSTRAINTS = "SET CONSTRAINTS ALL IMMEDIATE"


def batch(connection: Connection) -> AbstractAsyncContextManager[AsyncPipeline]:
    """Statements executed inside go out together and are answered in one round trip."""
    return connection.pipeline()


#: Sent right after every COMMIT, as its own tiny transaction: event readers and delivery workers wake up (the
#: outbox stays the truth; they also poll). Inside the business transaction a NOTIFY would make every commit queue
#: on PostgreSQL's notify lock.
WAKE_LISTENERS = f"NOTIFY {NOTIFY_CHANNEL}"


async def commit(connection: Connection) -> None:
    await connection.execute(f"COMMIT; {WAKE_LISTENERS}")


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
