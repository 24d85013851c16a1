"""CHAOS-1, the soak (reliability.md §7.3): the marketplace loop under API SIGKILLs and a PostgreSQL crash, then the
checks. Shared by the CI test (2,000 operations) and `make soak` (10,000).

The seed picks the workload (who does what, with which keys and amounts), the receiver's misbehaviour and when
each fault strikes (after how many operations); real processes make the rest vary, so a failing seed shows where
to look rather than replaying the run exactly.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from tests.chaos.checker import FAULT_MARGIN_SECONDS, check_effects, check_requests, resolve_unknown
from tests.chaos.cluster import Cluster, Fault
from tests.chaos.deliveries import CHECKER_503, check_deliveries, get_json
from tests.chaos.history import REQUEST_DEADLINE, Client
from tests.chaos.workload import Shape, Workload
from tests.webhook_receiver import Received, Receiver, Reply

API_KILLS = 3
PG_RESTARTS = 1
QUIESCENCE_SECONDS = 300.0
#: CHAOS-3's bound: answering normally again this soon after PostgreSQL accepts connections.
RECOVERY_SECONDS = 5.0


@dataclass
class SoakResult:
    seed: int
    figures: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    folder: Path | None = None

    def summary(self) -> str:
        f = self.figures
        faults = ", ".join(f"{x['kind']} {x['seconds']:.1f} s" for x in f.get("faults", []))
        lines = [
            f"CHAOS_SEED={self.seed}: {f.get('operations')} operations {f.get('results')}, "
            f"{f.get('resolved_late')} unknown outcomes resolved by same-key retry, {f.get('replayed')} replayed",
            f"faults: {f.get('api_kills')} API SIGKILLs, {f.get('pg_restarts')} PostgreSQL restarts ({faults})",
            f"retries {f.get('retries')} {f.get('retry_reasons')}; statuses {f.get('statuses')}; "
            f"500s near a fault {f.get('server_errors_near_faults')}; 503s over {RECOVERY_SECONDS:.0f} s after a fault "
            f"{f.get('late_503')} (and {f.get('checker_503')} to the checker's reads); hung {f.get('hung')}",
            f"lost: {f.get('lost')}, duplicated: {f.get('duplicated')}, phantom: {f.get('phantom')}",
            f"webhooks {f.get('webhooks')}: events committed {f.get('events_committed')}, delivered "
            f"{f.get('events_delivered')}, receiver requests {f.get('receiver_requests')} {f.get('receiver_answers')}, "
            f"signatures failed {f.get('signatures_failed')}",
            f"delivery log: {f.get('log_deliveries')} deliveries, {f.get('log_attempts')} attempts "
            f"{f.get('log_outcomes')}, {f.get('log_attempts_unseen')} never at the receiver, matching the receiver: "
            f"{f.get('log_matches')}",
            f"audit ok={f.get('audit', {}).get('ok')} {f.get('audit', {}).get('violations')}; "
            f"{f.get('seconds')} s; {len(self.problems)} problems",
        ]
        return "\n".join(lines)


def plan_faults(rng: random.Random, operations: int) -> list[tuple[int, str]]:
    """When each fault strikes, in operations done: spread over the middle of the run, at least 8% apart."""
    kinds = ["api_kill"] * API_KILLS + ["pg_restart"] * PG_RESTARTS
    rng.shuffle(kinds)
    while True:
        points = sorted(rng.randint(operations // 10, operations * 85 // 100) for _ in kinds)
        if all(b - a >= operations * 8 // 100 for a, b in itertools.pairwise(points)):
            return list(zip(points, kinds, strict=True))


def receiver_script(rng: random.Random):
    """Mostly healthy; sometimes a 500, sometimes slower than the worker's 4 s timeout."""

    def respond(request: Received) -> Reply:
        roll = rng.random()
        if roll < 0.05:
            return Reply(500, body=b'{"error":"soak"}')
        if roll < 0.07:
            return Reply(delay=6.0)
        return Reply(200)

    return respond


async def _inject(cluster: Cluster, client: Client, plan: list[tuple[int, str]], rng: random.Random) -> None:
    for point, kind in plan:
        while len(client.ops) < point:  # noqa: ASYNC110 - the operations are counted, nobody signals them
            await asyncio.sleep(0.05)
        if kind == "api_kill":
            fault = await cluster.kill_api(rng.randrange(len(cluster.api_urls)))
        else:
            fault = await cluster.restart_postgres()
        print(
            f"fault at operation {point}: {fault.kind} {fault.target}, back after {fault.ended - fault.started:.1f} s"
        )


async def _quiesce(url: str, within: float) -> int:
    """Until no delivery is pending (the worker has sent everything); the number still pending."""
    deadline = time.monotonic() + within
    while True:
        with psycopg.connect(url, autocommit=True) as db:
            (pending,) = db.execute("SELECT count(*) FROM webhook_delivery WHERE status = 'pending'").fetchone()
        if not pending or time.monotonic() > deadline:
            return pending
        await asyncio.sleep(0.5)


def _audit(api_url: str, admin_key: str) -> dict:
    with httpx.Client(base_url=api_url, timeout=120) as http:
        return get_json(http, "/api/v1/admin/ledger/audit", admin_key)["data"]


def _since(at: float, faults: list[Fault]) -> float | None:
    """Seconds since the last fault before `at` had ended."""
    ended = [at - f.ended for f in faults if f.ended <= at]
    return round(min(ended), 1) if ended else None


def _write_received(path: Path, requests: list[Received]) -> None:
    """What the receiver saw, one line a request (the history's counterpart for deliveries)."""
    with path.open("w", encoding="utf-8") as out:
        for r in requests:
            answer = r.reply.status if r.answered else None
            line = {"number": r.number, "at": r.at, "target": r.target, "webhook_id": r.webhook_id, "answer": answer}
            out.write(json.dumps({**line, "delivery": r.header("X-TaskHive-Delivery"), "gone_at": r.gone_at}) + "\n")


async def soak(folder: Path, operations: int, seed: int, shape: Shape | None = None) -> SoakResult:
    shape = shape or Shape()
    rng = random.Random(seed)
    result = SoakResult(seed, folder=folder)
    CHECKER_503.clear()
    started = time.monotonic()
    cluster = await asyncio.to_thread(Cluster.start, folder)
    receiver = Receiver(respond=receiver_script(random.Random(rng.random())))
    limits = httpx.Limits(max_connections=4 * shape.clients, max_keepalive_connections=4 * shape.clients)
    http = httpx.AsyncClient(timeout=httpx.Timeout(REQUEST_DEADLINE + 5), limits=limits)
    client = Client(http, cluster.api_urls, folder / "history.jsonl", random.Random(rng.random()))
    try:
        await receiver.start()
        admin_key = await asyncio.to_thread(cluster.admin_key)
        workload = Workload(client, admin_key, lambda token: receiver.url(f"/h/{token}"), rng, operations, shape)
        plan = plan_faults(random.Random(rng.random()), operations)
        loaded = time.monotonic()
        await asyncio.gather(workload.run(), _inject(cluster, client, plan, random.Random(rng.random())))
        ran = time.monotonic()
        resolved = await resolve_unknown(client)
        pending = await _quiesce(cluster.postgres.url, QUIESCENCE_SECONDS)
        quiet = time.monotonic()
        if pending:
            result.problems.append(f"{pending} deliveries still pending {QUIESCENCE_SECONDS:.0f} s after the run")
        await asyncio.to_thread(cluster.stop_worker)
        await asyncio.sleep(0.5)  # nothing is sending now; let the last answers settle in the receiver
        _write_received(folder / "received.jsonl", receiver.requests)

        effects = await asyncio.to_thread(check_effects, cluster.postgres.url, client, workload)
        result.problems += effects.problems
        result.problems += check_requests(client, cluster.faults)
        deliveries = await asyncio.to_thread(
            check_deliveries, cluster.postgres.url, cluster.api_urls[0], client, workload, list(receiver.requests)
        )
        result.problems += deliveries.problems
        audit = await asyncio.to_thread(_audit, cluster.api_urls[1], admin_key)
        if not audit["ok"]:
            result.problems.append(f"ledger audit: {audit['violations']}")

        ops = client.ops
        late = [
            r
            for r in client.responses
            if r.status == 503 and not any(f.started - 2 <= r.at <= f.ended + RECOVERY_SECONDS for f in cluster.faults)
        ]
        near = sum(
            1
            for r in client.responses
            if r.status == 500
            and any(f.started - FAULT_MARGIN_SECONDS <= r.at <= f.ended + FAULT_MARGIN_SECONDS for f in cluster.faults)
        )
        result.figures = {
            "seed": seed,
            "operations": len(ops),
            "results": dict(Counter(op.result for op in ops)),
            "info_during_run": sum(1 for op in ops if op.resolved_late or op.result == "info"),
            "resolved_late": len(resolved),
            "by_kind": {
                kind: dict(Counter(op.result for op in ops if op.kind == kind))
                for kind in sorted({o.kind for o in ops})
            },
            "replayed": sum(op.replayed for op in ops),
            "requests": sum(len(op.attempts) for op in ops),
            "retries": sum(client.retries.values()),
            "retry_reasons": dict(client.retries),
            "statuses": dict(sorted(Counter(r.status for r in client.responses).items())),
            "server_errors_near_faults": near,
            # 503s are allowed (the client retries them), but PostgreSQL was back: a dead pooled connection.
            "late_503": len(late),
            "late_503_seconds_after_fault": [_since(r.at, cluster.faults) for r in late],
            "checker_503": len(CHECKER_503),
            "checker_503_seconds_after_fault": [_since(at, cluster.faults) for at in CHECKER_503],
            "hung": len(client.hung),
            "api_kills": sum(f.kind == "api_kill" for f in cluster.faults),
            "pg_restarts": sum(f.kind == "pg_restart" for f in cluster.faults),
            "faults": [f.as_json() for f in cluster.faults],
            "fault_plan": plan,
            "lost": effects.lost,
            "duplicated": effects.duplicated,
            "phantom": effects.phantom,
            "effects_checked": dict(effects.counted),
            "tasks": {
                "finished": len(workload.finished),
                "live": len(workload.tasks),
                "retired": len(workload.retired),
            },
            "agents": len(workload.agents),
            "operators": len(workload.operators),
            **deliveries.figures,
            "log_matches": not any("does not match the receiver" in p for p in deliveries.problems),
            "audit": {"ok": audit["ok"], "violations": audit["violations"], "entries": audit["entries"]},
            "seconds": {
                "total": round(time.monotonic() - started, 1),
                "workload": round(ran - loaded, 1),
                "quiescence": round(quiet - ran, 1),
            },
            "problems": len(result.problems),
        }
        (folder / "soak.json").write_text(
            json.dumps({**result.figures, "problem_list": result.problems[:500]}, indent=2, default=str)
        )
    finally:
        client.close()
        await http.aclose()
        await receiver.stop()
        await asyncio.to_thread(cluster.stop)
        cluster.remove_database()
    return result
