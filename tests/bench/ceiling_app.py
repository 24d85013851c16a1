"""The ceilings `make bench` measures Agora's read scenarios against, served by uvicorn like Agora itself.

    BENCH_DATABASE_URL=... uvicorn tests.bench.ceiling_app:app --workers N --loop uvloop --http httptools

- `GET /plain`: a small JSON object, no database: the framework's own ceiling.
- `GET /task/{id}`, `GET /browse[?after=ID]`, `GET /search?q=...`: the same rows as Agora's GET task, browse (open
  tasks, newest first, 20 a page) and search, each with ONE raw psycopg query on a plain pool, no auth, no rate
  limit, no envelope beyond a list of objects.

The SQL is Agora's own (imported from `app.repo.tasks`), so both sides ask PostgreSQL exactly the same thing.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, get
from psycopg_pool import AsyncConnectionPool

from app.repo.tasks import _FROM, _RECORD, LISTED, LISTED_RECORD, TASK_RECORD
from app.repo.visibility import VISIBLE
from app.services.tasks import search_query

PAGE = 20
COLUMNS = TASK_RECORD.aliases
LISTED_COLUMNS = LISTED_RECORD.aliases
# The reader Agora's statements name (app.repo.connections.VIEWER_AGENT): a key's agent and operator there, fixed
# ids of no one here, so that the rows read and the visibility test are the same work.
_VIEWER = "WITH viewer AS (SELECT 0::bigint AS agent_id, 0::bigint AS operator_id)"
GET_SQL = f"{_VIEWER} {_RECORD}{_FROM} WHERE t.id = %s AND {VISIBLE}"
BROWSE_FIRST_SQL = f"{_VIEWER} {LISTED}{_FROM} WHERE t.status = 'open' AND {VISIBLE} ORDER BY t.id DESC LIMIT %s"
BROWSE_AFTER_SQL = (
    f"{_VIEWER} {LISTED}{_FROM} WHERE t.status = 'open' AND {VISIBLE} AND t.id < %s ORDER BY t.id DESC LIMIT %s"
)
SEARCH_SQL = f"""
{_VIEWER}, q AS (SELECT to_tsquery('english', %(query)s) AS query)
SELECT page.* FROM q JOIN LATERAL (
    {_RECORD}, ts_rank(t.search, q.query)::float8 AS rank
    {_FROM}
    WHERE t.search @@ q.query AND t.status = 'open' AND {VISIBLE}
    ORDER BY rank DESC, t.id DESC
    LIMIT %(limit)s
) page ON true
"""

_pool: AsyncConnectionPool | None = None


def _rows(rows: list[tuple], names: tuple[str, ...] = COLUMNS) -> list[dict[str, Any]]:
    return [dict(zip(names, row, strict=True)) for row in rows]


async def _fetch(query: str, params: Any) -> list[tuple]:
    assert _pool is not None
    async with _pool.connection() as connection:
        cursor = await connection.execute(query, params)
        return await cursor.fetchall()


@get("/plain")
async def plain() -> dict[str, Any]:
    return {"status": "ok", "service": "ceiling"}


@get("/task/{task_id:int}")
async def task(task_id: int) -> dict[str, Any]:
    rows = await _fetch(GET_SQL, (task_id,))
    return {"data": _rows(rows)[0] if rows else None}


@get("/browse")
async def browse(after: int | None = None) -> dict[str, Any]:
    if after is None:
        rows = await _fetch(BROWSE_FIRST_SQL, (PAGE + 1,))
    else:
        rows = await _fetch(BROWSE_AFTER_SQL, (after, PAGE + 1))
    return {"data": _rows(rows[:PAGE], LISTED_COLUMNS)}


@get("/search")
async def search(q: str) -> dict[str, Any]:
    rows = await _fetch(SEARCH_SQL, {"query": search_query(q), "limit": PAGE + 1})
    return {"data": _rows(rows[:PAGE], (*COLUMNS, "relevance"))}


@asynccontextmanager
async def lifespan(_: Litestar) -> AsyncIterator[None]:
    global _pool
    size = int(os.environ.get("BENCH_POOL_MAX", "32"))
    _pool = AsyncConnectionPool(
        os.environ["BENCH_DATABASE_URL"], min_size=size, max_size=size, kwargs={"autocommit": True}, open=False
    )
    await _pool.open(wait=True)
    try:
        yield
    finally:
        await _pool.close()
        _pool = None


app = Litestar([plain, task, browse, search], lifespan=[lifespan], debug=False)
