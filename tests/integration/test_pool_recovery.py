"""After PostgreSQL drops every connection (a restart), one failed request is enough: the pool checks its idle
connections and replaces the dead ones, instead of each failing the next request that takes it (the chaos soak saw
503s for 16 s after a restart)."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from app.repo.connections import PoolSource, open_pool

APP = "agora-pool-recovery"


async def test_one_lost_connection_gets_every_dead_idle_one_replaced(database_url):
    pool = open_pool(database_url, min_size=4, max_size=4, statement_timeout_ms=5000, name=APP)
    await pool.open(wait=True, timeout=30)
    source = PoolSource(pool)
    try:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (APP,)
            )
        first = await source.acquire()
        with pytest.raises(psycopg.OperationalError):
            await first.execute("SELECT 1")
        await source.release(first)  # broken: the pool's idle connections are checked in the background
        await asyncio.sleep(0.5)  # the check takes a few ms here
        for _ in range(4):  # every connection the pool now hands out works
            connection = await source.acquire()
            try:
                assert await (await connection.execute("SELECT 1")).fetchone() == (1,)
            finally:
                await source.release(connection)
    finally:
        await pool.close()
