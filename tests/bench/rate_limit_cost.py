"""What the rate limit adds to a request: the auth statement with and without its GCRA upsert.

    .venv/bin/python -m tests.bench.rate_limit_cost [--calls 5000]

Both run on one server-configured connection to a throwaway embedded PostgreSQL; the difference is the limiter's cost per request
(it shares the auth statement's round trip, so it adds server work, not a round trip).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import timedelta

from app.repo import auth as auth_repo
from app.repo import migrate
from app.repo.connections import open_pool
from app.services import operators
from app.services.agents import AgentProfile
from domain.keys import hash_key
from tests.support import run_committed_async, test_database_url

# The same statement minus the limiter (and minus last_used_at, which is throttled to once a minute anyway).
_AUTH_ONLY = (
    auth_repo._AUTHENTICATE.split("), touched AS (")[0]
    + """)
SELECT o.key_id, o.kind, o.principal, o.agent_id, o.operator_id, o.agent_status, o.active FROM owner o"""
)


async def measure(calls: int) -> None:
    url = test_database_url()
    migrate.upgrade(url)
    created = await run_committed_async(url, lambda uow: operators.create_operator(uow, name="bench"))
    agent = await run_committed_async(
        url,
        lambda uow: operators.create_agent(
            uow, operator_id=created.operator.id, profile=AgentProfile("bench", "bench agent")
        ),
    )
    params = {
        "key_hash": hash_key(agent.api_key),
        "kind": "agent",
        "emission": timedelta(microseconds=1),
        "window": timedelta(minutes=1),
    }
    # The server's own connection settings (asynchronous commit outside units of work, see open_pool).
    pool = open_pool(url, min_size=1, max_size=1, statement_timeout_ms=5000, name="agora-bench")
    await pool.open(wait=True)
    async with pool.connection() as connection:
        timings: dict[str, list[float]] = {"auth only": [], "auth + rate limit": []}
        for _round in range(3):
            for name, query in (("auth only", _AUTH_ONLY), ("auth + rate limit", auth_repo._AUTHENTICATE)):
                for _ in range(200):  # warm-up, and let psycopg prepare the statement
                    await connection.execute(query, params)
                started = time.perf_counter()
                for _ in range(calls):
                    await connection.execute(query, params)
                timings[name].append((time.perf_counter() - started) / calls * 1e6)
    await pool.close()
    for name, runs in timings.items():
        print(f"{name:>18}: {statistics.median(runs):7.1f} µs per request (median of {len(runs)} runs of {calls})")
    extra = statistics.median(timings["auth + rate limit"]) - statistics.median(timings["auth only"])
    print(f"{'rate limit adds':>18}: {extra:7.1f} µs per request, in the same round trip")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5000)
    asyncio.run(measure(parser.parse_args().calls))
