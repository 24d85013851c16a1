"""Transaction control statements, issued on behalf of the unit of work.

At the top level these are BEGIN/COMMIT/ROLLBACK; nested (tests) they are savepoints, so a test's outer
transaction can roll everything back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from app.repo.connections import Connection
from app.repo.events import NOTIFY_CHANNEL

#: Statements a use case leaves for its commit's own round trip, issued on the connection it is given (they run
#: after the unit of work has handed the commit over, and must not read their results).
Closing = Callable[[Connection], Awaitable[None]]

_TOP = "uow"


async def begin(connection: Connection, *, nested: bool, savepoint: str | None = None) -> None:
    """Open the transaction and, when `savepoint` is given, a savepoint inside it, in one round trip."""
    # Pool connections default to asynchronous commit (see connections.open_pool); a use case's commit is durable.
    statements = [f"SAVEPOINT {_TOP}"] if nested else ["BEGIN", "SET LOCAL synchronous_commit TO on"]
    if savepoint:
        statements.append(f"SAVEPOINT {savepoint}")
    await connection.execute("; ".join(statements))


CHECK_DEFERRED_CONSTRAINTS = "SET CONSTRAINTS ALL IMMEDIATE"


def batch(connection: Connection):
    """Statements executed inside go out together and are answered in one round trip."""
    return connection.pipeline()


def commit_statement(*, nested: bool) -> str:
    return f"RELEASE SAVEPOINT {_TOP}" if nested else "COMMIT"


#: Sent right after every COMMIT, as its own tiny transaction: event readers and delivery workers wake up (the
#: outbox stays the truth; they also poll). Inside the business transaction a NOTIFY would make every commit queue
#: on PostgreSQL's notify lock.
WAKE_LISTENERS = f"NOTIFY {NOTIFY_CHANNEL}"


async def commit(connection: Connection, *, nested: bool, closing: Closing | None = None) -> None:
    if closing is None:
        await connection.execute(f"{commit_statement(nested=nested)}; {WAKE_LISTENERS}")
        return
    async with connection.pipeline():
        await closing(connection)
        await connection.execute(commit_statement(nested=nested))
        await connection.execute(WAKE_LISTENERS)


async def rollback(connection: Connection, *, nested: bool) -> None:
    if connection.closed:
        return
    await connection.execute(f"ROLLBACK TO SAVEPOINT {_TOP}; RELEASE SAVEPOINT {_TOP}" if nested else "ROLLBACK")


async def rollback_to(connection: Connection, savepoint: str) -> None:
    await connection.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")


async def savepoint(connection: Connection, name: str) -> None:
    await connection.execute(f"SAVEPOINT {name}")


async def release(connection: Connection, name: str) -> None:
    await connection.execute(f"RELEASE SAVEPOINT {name}")


async def repeatable_read(connection: Connection, *, nested: bool) -> None:
    """Give the transaction one snapshot for all its statements (must come before its first query)."""
    if not nested:
        await connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
