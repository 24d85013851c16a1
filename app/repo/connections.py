"""Connections for request paths: a psycopg pool, or one connection handed to every request (tests, tools).

A request leases at most one connection and keeps it until its response is sent, so authentication, rate limit,
idempotency and the use case's transaction share it (fewest round trips, one checkout).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolClosed

Connection = AsyncConnection[TupleRow]
T = TypeVar("T")

#: The condition a `Query` is given when nothing more than the statement itself decides whether it may run.
ALWAYS = "true"


#: What a read that depends on who reads it (a directed task, the poster's metadata) names its reader by: a
#: one-row relation `viewer (agent_id, operator_id)`, which the statement that runs the read provides (`run`, or
#: the authenticating statement, from the caller's row).
VIEWER_AGENT = "(SELECT agent_id FROM viewer)"
VIEWER_OPERATOR = "(SELECT operator_id FROM viewer)"


@dataclass(frozen=True, slots=True)
class Viewer:
    agent_id: int | None
    operator_id: int | None


@dataclass(frozen=True, slots=True)
class Query(Generic[T]):
    """A read not yet run: its SELECT, given the condition that lets it run, its parameters (named), and how its
    rows are read. `statement(gate)` must put `gate` in the WHERE of every part that touches a table, so that a
    false gate reads nothing, and its first column must never be NULL. Run it with `run`, or with the caller's
    authentication in the same statement (app.repo.auth.run_authenticated). A read with `viewed` set names its
    reader (VIEWER_AGENT, VIEWER_OPERATOR) and must not start with WITH."""

    statement: Callable[[str], str]
    params: dict[str, Any]
    read: Callable[[Sequence[TupleRow]], T]
    viewed: bool = False


_VIEWER = "WITH viewer AS (SELECT %(viewer_agent)s::bigint AS agent_id, %(viewer_operator)s::bigint AS operator_id) "


async def run(connection: Connection, query: Query[T], viewer: Viewer | None = None) -> T:
    statement, params = query.statement(ALWAYS), query.params
    if query.viewed:
        if viewer is None:
            raise RuntimeError("this read depends on its reader: run it with a viewer")
        statement = _VIEWER + statement
        params = {**params, "viewer_agent": viewer.agent_id, "viewer_operator": viewer.operator_id}
    cursor = await connection.execute(statement, params)
    return query.read(await cursor.fetchall())


async def one_row(cursor: AsyncCursor[TupleRow]) -> TupleRow:
    """The row a statement always returns (INSERT ... RETURNING, an aggregate, EXISTS); none is a bug."""
    row = await cursor.fetchone()
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


class ConnectionSource(Protocol):
    async def acquire(self) -> Connection: ...

    async def release(self, connection: Connection) -> None: ...


async def _configure(connection: Connection) -> None:
    await connection.set_autocommit(True)


def open_pool(url: str, *, min_size: int, max_size: int, statement_timeout_ms: int, name: str) -> AsyncConnectionPool:
    """A pool of autocommit connections; transactions are opened explicitly by the unit of work.

    Every commit is durable (the server's default). A read's only write, the rate limit's counter, goes to an
    unlogged table (migration 0010): it writes no WAL, so its commit waits for no flush.
    """
    options = f"-c statement_timeout={statement_timeout_ms} -c lock_timeout={statement_timeout_ms}"
    return AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True, "application_name": name, "options": options},
        configure=_configure,
        open=False,
        name=name,
        timeout=10.0,
    )


class PoolSource:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self._check: asyncio.Task[None] | None = None

    async def acquire(self) -> Connection:
        return await self.pool.getconn()

    async def release(self, connection: Connection) -> None:
        broken = connection.broken
        await self.pool.putconn(connection)
        if broken and (self._check is None or self._check.done()):
            # One lost connection usually means PostgreSQL restarted: every idle one is dead too, and each would
            # fail the next request that takes it. Check them all now, in the background, once.
            self._check = asyncio.create_task(_check_idle(self.pool))


async def _check_idle(pool: AsyncConnectionPool) -> None:
    with contextlib.suppress(PoolClosed):  # the process is stopping: nothing left to check
        await pool.check()


class SharedConnectionSource:
    """Hands out one connection to every request, one at a time (a test's own database, a tool); it stays open."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    async def acquire(self) -> Connection:
        return self.connection

    async def release(self, connection: Connection) -> None:
        return None


class ConnectionLease:
    """One request's connection, taken from the source on first use and given back once."""

    def __init__(self, source: ConnectionSource) -> None:
        self.source = source
        self._connection: Connection | None = None

    async def connection(self) -> Connection:
        if self._connection is None:
            self._connection = await self.source.acquire()
        return self._connection

    async def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if not connection.closed and connection.info.transaction_status != 0:
            # A transaction left open by an interrupted request must not leak into the next one.
            await connection.execute("ROLLBACK")
        await self.source.release(connection)
