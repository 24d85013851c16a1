"""The soak's finding, on its own: PostgreSQL crashing while the delivery worker claims makes the delivery log miss
attempts the receiver got (issue 19's contract: listed attempts = the receiver's + interrupted ones).

    python -m tests.chaos.claim_crash [--crashes 5]     prints each delivery the log and the receiver disagree on

30 webhooks, 80 test pings each, a receiver that answers after 0.3 s, and PostgreSQL crashed (pg_ctl -m immediate)
every 2 s while the worker sends them. Exits 1 when any delivery has more requests at the receiver than attempts in
its log. Why (as measured when written): the claim (`app/repo/deliveries.py` `_CLAIM`, run outside a unit of work)
commits with the pool's `synchronous_commit=off`, so a claim acknowledged just before the crash can vanish while
the worker sends the request anyway; after recovery the delivery is claimed again as the same attempt number, the
receiver gets it twice, and the log lists one attempt (the first attempt's late outcome is written onto the second
claim's row, or dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import psycopg

from tests.chaos.cluster import Cluster
from tests.webhook_receiver import Receiver, Reply

HOOKS_PER_AGENT, AGENTS, PINGS = 5, 6, 80


async def run(folder: Path, crashes: int) -> int:
    cluster = await asyncio.to_thread(Cluster.start, folder)
    receiver = await Receiver(then=Reply(200, delay=0.3)).start()
    try:
        admin = await asyncio.to_thread(cluster.admin_key)
        async with httpx.AsyncClient(base_url=f"{cluster.api_urls[0]}/api/v1", timeout=30) as http:

            async def post(path: str, key: str, body: dict | None = None) -> dict:
                response = await http.post(path, json=body, headers={"Authorization": f"Bearer {key}"})
                assert response.status_code < 300, response.text
                return response.json()["data"]

            operator = await post("/admin/operators", admin, {"name": "claim-crash"})
            hooks = []
            for a in range(AGENTS):
                agent = await post("/operator/agents", operator["api_key"], {"name": f"cc-{a}", "description": "x"})
                for h in range(HOOKS_PER_AGENT):
                    body = {"url": receiver.url(f"/h/{a}-{h}"), "events": ["task.created"]}
                    hooks.append(((await post("/webhooks", agent["api_key"], body))["id"], agent["api_key"]))

            async def pings(hook_id: int, key: str) -> None:
                for _ in range(PINGS):
                    await post(f"/webhooks/{hook_id}/test", key)

            await asyncio.gather(*(pings(*hook) for hook in hooks))
            await asyncio.sleep(3)  # the worker is busy claiming and sending
            for _ in range(crashes):
                fault = await cluster.restart_postgres()
                when = time.strftime("%H:%M:%S", time.localtime(fault.started))
                print(f"PostgreSQL crashed at {when}, back after {fault.ended - fault.started:.1f} s")
                await asyncio.sleep(2)
        url = cluster.postgres.url
        for _ in range(300):
            with psycopg.connect(url) as db:
                (pending,) = db.execute("SELECT count(*) FROM webhook_delivery WHERE status = 'pending'").fetchone()
            if not pending:
                break
            await asyncio.sleep(1)
        await asyncio.to_thread(cluster.stop_worker)
        seen = Counter(r.header("X-TaskHive-Delivery") for r in receiver.requests)
        with psycopg.connect(url) as db:
            rows = db.execute(
                """SELECT d.id, array_agg(a.outcome ORDER BY a.attempt_number)
                     FROM webhook_delivery d JOIN webhook_attempt a ON a.delivery_id = d.id GROUP BY d.id"""
            ).fetchall()
        listed = sum(len(outcomes) for _, outcomes in rows)
        print(f"{len(rows)} deliveries, {listed} attempts listed, {len(receiver.requests)} requests at the receiver")
        wrong = [(d, outcomes, seen[f"whd_{d}"]) for d, outcomes in rows if seen[f"whd_{d}"] > len(outcomes)]
        for delivery_id, outcomes, count in wrong:
            arrivals = [
                f"{r.at:.3f}" for r in receiver.requests if r.header("X-TaskHive-Delivery") == f"whd_{delivery_id}"
            ]
            print(f"delivery {delivery_id}: log {outcomes}, the receiver got {count} (at {', '.join(arrivals)})")
        print(f"{len(wrong)} deliveries got more requests than their log lists attempts")
        return 1 if wrong else 0
    finally:
        await receiver.stop()
        await asyncio.to_thread(cluster.stop)
        cluster.remove_database()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.claim_crash", description=__doc__.split("\n")[0])
    parser.add_argument("--crashes", type=int, default=5)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="agora-claim-crash-"))
    print(f"logs in {folder}")
    return asyncio.run(run(folder, args.crashes))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
