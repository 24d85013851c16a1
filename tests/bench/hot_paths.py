"""Latency of the two hot writes, accept-bid and accept-deliverable, through HTTP with an Idempotency-Key.

    .venv/bin/python -m tests.bench.hot_paths [--tasks 300] [--set webhook_worker=false]

One uvicorn process on a throwaway embedded PostgreSQL, one client connection, requests one after another (so
this is latency, not throughput; `make bench` will measure throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import httpx

from app.repo import migrate
from app.services import credits, operators
from app.services.agents import AgentProfile
from tests.support import run_committed_async, start_servers, test_database_url


def summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return (
        f"{name:>19}: n={len(samples)} mean={statistics.mean(samples):.2f} ms p50={pick(0.5):.2f} "
        f"p90={pick(0.9):.2f} p99={pick(0.99):.2f}"
    )


async def main(count: int, settings: dict[str, str]) -> None:
    url = test_database_url()
    migrate.upgrade(url)
    poster_op = await run_committed_async(url, lambda uow: operators.create_operator(uow, name="bench poster"))
    worker_op = await run_committed_async(url, lambda uow: operators.create_operator(uow, name="bench worker"))
    await run_committed_async(
        url,
        lambda uow: credits.adjust_operator(uow, operator_id=poster_op.operator.id, amount=100 * count, reason="bench"),
    )
    poster = await run_committed_async(
        url,
        lambda uow: operators.create_agent(
            uow, operator_id=poster_op.operator.id, profile=AgentProfile("poster", "posts")
        ),
    )
    worker = await run_committed_async(
        url,
        lambda uow: operators.create_agent(
            uow, operator_id=worker_op.operator.id, profile=AgentProfile("worker", "works")
        ),
    )
    servers = start_servers(url, count=1, rate_limit_per_minute="1000000", **settings)
    as_poster = {"Authorization": f"Bearer {poster.api_key}"}
    as_worker = {"Authorization": f"Bearer {worker.api_key}"}
    try:
        async with httpx.AsyncClient(base_url=servers.urls[0], timeout=30) as client:
            bids = []
            for n in range(count):
                task = (
                    await client.post(
                        "/api/v1/tasks",
                        headers=as_poster,
                        json={
                            "title": f"Bench task {n}",
                            "description": "A task to measure the hot paths with.",
                            "budget_credits": 100,
                        },
                    )
                ).json()["data"]
                bid = (
                    await client.post(
                        f"/api/v1/tasks/{task['id']}/claims", headers=as_worker, json={"proposed_credits": 90}
                    )
                ).json()["data"]
                bids.append((task["id"], bid["id"]))
            timings: dict[str, list[float]] = {
                "GET /healthz": [],
                "GET /agents/me": [],
                "accept-bid": [],
                "accept-deliverable": [],
            }
            for _ in range(count):  # baselines: the framework alone, then auth + rate limit + one read
                for name, path in (("GET /healthz", "/healthz"), ("GET /agents/me", "/api/v1/agents/me")):
                    started = time.perf_counter()
                    await client.get(path, headers=as_worker)
                    timings[name].append((time.perf_counter() - started) * 1000)
            deliverables = []
            for task_id, bid_id in bids:
                started = time.perf_counter()
                response = await client.post(
                    f"/api/v1/tasks/{task_id}/claims/{bid_id}/accept",
                    headers={**as_poster, "Idempotency-Key": str(uuid.uuid4())},
                )
                timings["accept-bid"].append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text
                delivered = (
                    await client.post(
                        f"/api/v1/tasks/{task_id}/deliverables", headers=as_worker, json={"content": "done"}
                    )
                ).json()["data"]
                deliverables.append((task_id, delivered["id"]))
            for task_id, deliverable_id in deliverables:
                started = time.perf_counter()
                response = await client.post(
                    f"/api/v1/tasks/{task_id}/deliverables/{deliverable_id}/accept",
                    headers={**as_poster, "Idempotency-Key": str(uuid.uuid4())},
                )
                timings["accept-deliverable"].append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text
            audit = (await client.get("/healthz")).status_code
        for name, samples in timings.items():
            print(summary(name, samples[10:]))  # the first requests warm the server and the statement cache
        print(f"server healthy after the run: {audit == 200}")
    finally:
        servers.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a server setting, e.g. webhook_worker=false"
    )
    arguments = parser.parse_args()
    asyncio.run(main(arguments.tasks, dict(item.split("=", 1) for item in arguments.set)))
