"""Webhook deliveries per second to a local receiver, with one and two delivery workers.

    .venv/bin/python -m tests.bench.webhook_throughput [--count 3000] [--webhooks 16]

A throwaway embedded PostgreSQL; `--webhooks` endpoints (four per agent) all pointing at one 200-receiver that runs
in a process of its own (`python -m tests.webhook_receiver`). Each run enqueues `--count` ping deliveries in one
transaction (events and deliveries inserted by SQL, as POST /webhooks/{id}/test does one at a time), wakes the
workers with the outbox's NOTIFY, and times until every delivery has succeeded. Workers run in this process
(DeliveryWorker on a pool of its own each, sharing this process's one CPU) or as `agora worker` processes.

The receiver's own capacity is measured first (this process firing at it over 64 connections), and its CPU use is
reported for every run: a receiver below 100% of one CPU was not what limited the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from app.config import load_settings
from app.crypto import KeyRing
from app.logging import configure_logging
from app.outbound.webhook_client import WebhookClient
from app.repo import migrate
from app.repo.connections import PoolSource, open_pool
from app.repo.events import NOTIFY_CHANNEL
from app.services import operators
from app.services.agents import AgentProfile
from app.services.sealing import webhook_context
from app.workers.webhook_dispatcher import DeliveryWorker
from domain.webhooks import new_secret, parse_allow_cidrs
from tests.support import ROOT, run_committed_async, test_database_url

LOOPBACK = "127.0.0.0/8"
HOOKS_PER_AGENT = 4

_ENQUEUE = """
WITH e AS (
    INSERT INTO event (type, data)
    SELECT 'webhook.ping', jsonb_build_object('webhook_id', h.hooks[1 + n %% cardinality(h.hooks)], 'message', 'bench')
      FROM generate_series(1, %(count)s) AS n, (SELECT %(hooks)s::bigint[] AS hooks) AS h
    RETURNING id, (data ->> 'webhook_id')::bigint AS webhook_id
)
INSERT INTO webhook_delivery (webhook_id, event_id, next_attempt_at)
SELECT webhook_id, id, now() FROM e
RETURNING id
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def receiver_process() -> AsyncIterator[tuple[int, int]]:
    """A 200-receiver in its own process: (pid, port)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.webhook_receiver", cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
    port = int(line.rsplit(" ", 1)[1])
    try:
        yield process.pid, port
    finally:
        # SIGTERM, not SIGINT: a process started in the background by a non-interactive shell ignores SIGINT, and
        # so does every child it starts (the receiver then never ended, and the run waited for it forever).
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


def postgres_cpu_seconds() -> float:
    """CPU time used so far by every PostgreSQL process on the machine (the embedded server's)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            if text.split("(", 1)[1].split(")", 1)[0] in ("postgres", "postmaster"):
                total += cpu_seconds(int(stat.parent.name))
    return total


@dataclass
class Usage:
    """CPU shares over a measured interval (1.0 = one CPU busy all along)."""

    receiver: float
    workers: float
    postgres: float


class CpuMeter:
    def __init__(self, receiver_pid: int, worker_pids: Callable[[], list[int]]) -> None:
        self.receiver_pid, self.worker_pids = receiver_pid, worker_pids

    def _sample(self) -> tuple[float, float, float, float]:
        pids = self.worker_pids()
        workers = sum(cpu_seconds(pid) for pid in pids) if pids else time.process_time()
        return time.perf_counter(), cpu_seconds(self.receiver_pid), workers, postgres_cpu_seconds()

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> Usage:
        end = self._sample()
        elapsed = end[0] - self._start[0]
        return Usage(*((b - a) / elapsed for a, b in zip(self._start[1:], end[1:], strict=True)))


async def receiver_capacity(port: int, pid: int, requests: int = 20_000, connections: int = 32) -> tuple[float, float]:
    """(requests per second the receiver answers, its CPU share meanwhile), fired at by a raw keep-alive client
    (hand-written requests, no HTTP library: as little client cost as possible)."""
    body = b'{"event":"webhook.ping","event_id":1,"timestamp":"2026-01-01T00:00:00Z","data":{}}'
    request = (
        f"POST /capacity HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body

    async def connection(count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(count):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            assert head.startswith(b"HTTP/1.1 200")
        writer.close()

    cpu, started = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(connection(requests // connections) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return requests // connections * connections / elapsed, (cpu_seconds(pid) - cpu) / elapsed


async def client_capacity(port: int, hooks: int, requests: int = 3000, concurrency: int = 32) -> tuple[float, float]:
    """(requests per second, this process's CPU share) of the workers' own WebhookClient alone (SSRF check, pinned
    request, capped read) posting to the receiver with the workers' concurrency: the ceiling of one worker's CPU."""
    client = WebhookClient(allow=parse_allow_cidrs(LOOPBACK), timeout=10)
    body = b'{"event":"webhook.ping","event_id":1,"timestamp":"2026-01-01T00:00:00Z","data":{}}'
    headers = {"webhook-id": "evt_1", "webhook-timestamp": "1", "webhook-signature": "v1,x"}
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        async with gate:
            result = await client.post(f"http://127.0.0.1:{port}/hook-{n % hooks}", body, headers)
            assert result.status == 200, result

    try:
        await asyncio.gather(*(one(n) for n in range(200)))
        cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(requests)))
        elapsed = time.perf_counter() - started
        return requests / elapsed, (time.process_time() - cpu) / elapsed
    finally:
        await client.aclose()


async def setup(url: str, port: int, hooks: int) -> list[int]:
    agents = []
    for n in range((hooks + HOOKS_PER_AGENT - 1) // HOOKS_PER_AGENT):
        created = await run_committed_async(url, lambda uow, n=n: operators.create_operator(uow, name=f"bench {n}"))
        agent = await run_committed_async(
            url,
            lambda uow, op=created.operator.id: operators.create_agent(
                uow, operator_id=op, profile=AgentProfile("receiver", "has webhooks")
            ),
        )
        agents.append(agent.agent.id)
    keyring = KeyRing.parse(os.environ["AGORA_SECRET_KEY"])  # the workers' key (tests.support sets the session's)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        ids = []
        for n in range(hooks):
            cursor = await connection.execute("SELECT nextval(pg_get_serial_sequence('webhook', 'id'))")
            (webhook_id,) = await cursor.fetchone()
            sealed = keyring.seal(new_secret().encode(), webhook_context(webhook_id))  # to its row, as stored
            await connection.execute(
                "INSERT INTO webhook (id, agent_id, url, events, secret) VALUES (%s, %s, %s, %s, %s)",
                (
                    webhook_id,
                    agents[n // HOOKS_PER_AGENT],
                    f"http://127.0.0.1:{port}/hook-{n}",
                    ["task.created"],
                    sealed,
                ),
            )
            ids.append(webhook_id)
    return ids


async def enqueue(url: str, hooks: list[int], count: int) -> list[int]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        async with connection.transaction():
            cursor = await connection.execute(_ENQUEUE, {"count": count, "hooks": hooks})
            ids = [row[0] for row in await cursor.fetchall()]
        await connection.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    return ids


async def wait_done(url: str, ids: list[int], within: float = 600) -> None:
    deadline = time.monotonic() + within
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        while True:
            cursor = await connection.execute(
                "SELECT count(*) FROM webhook_delivery WHERE id BETWEEN %s AND %s AND status <> 'succeeded'",
                (min(ids), max(ids)),
            )
            (left,) = await cursor.fetchone()
            if not left:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{left} deliveries still not delivered")
            await asyncio.sleep(0.02)


async def attempts_per_delivery(url: str, ids: list[int]) -> tuple[int, int, float]:
    """(attempts recorded, succeeded attempts, median attempt duration in ms) for the batch."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        cursor = await connection.execute(
            """SELECT count(*), count(*) FILTER (WHERE outcome = 'succeeded'),
                      percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms)
                 FROM webhook_attempt WHERE delivery_id = ANY (%s)""",
            (ids,),
        )
        return await cursor.fetchone()


@contextlib.asynccontextmanager
async def in_process_workers(url: str, count: int) -> AsyncIterator[list[int]]:
    settings = load_settings({}).with_overrides(webhook_allow_cidrs=LOOPBACK, secret_key=os.environ["AGORA_SECRET_KEY"])
    stack = contextlib.AsyncExitStack()
    async with stack:
        for n in range(count):
            pool = open_pool(url, min_size=2, max_size=8, statement_timeout_ms=5000, name=f"bench-worker-{n}")
            await pool.open(wait=True, timeout=30)
            stack.push_async_callback(pool.close)
            client = WebhookClient(allow=parse_allow_cidrs(LOOPBACK), timeout=settings.webhook_timeout_seconds)
            stack.push_async_callback(client.aclose)
            worker = DeliveryWorker(PoolSource(pool), client, settings, listen_url=url)
            await worker.start()
            stack.push_async_callback(_stop, worker)
        yield []  # no processes of their own: this one's CPU is theirs


async def _stop(worker: DeliveryWorker) -> None:
    with contextlib.suppress(Exception):  # stop() re-raises an attempt's exception (the logging bug)
        await worker.stop()


@contextlib.asynccontextmanager
async def worker_processes(url: str, count: int) -> AsyncIterator[list[int]]:
    env = {
        **os.environ,
        "AGORA_DATABASE_URL": url,
        "AGORA_WEBHOOK_ALLOW_CIDRS": LOOPBACK,
        "AGORA_LOG_FORMAT": "json",
        "AGORA_LOG_LEVEL": "info",
    }
    processes, drains = [], []
    try:
        for _ in range(count):
            process = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).with_name("agora")),
                "worker",
                cwd=ROOT,
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            processes.append(process)
            started = asyncio.Event()
            drains.append(asyncio.create_task(_drain(process, started)))
            await asyncio.wait_for(started.wait(), 30)
        yield [process.pid for process in processes]
    finally:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
        await asyncio.gather(*drains, return_exceptions=True)


async def _drain(process: asyncio.subprocess.Process, started: asyncio.Event) -> None:
    """Read the worker's log (it must not block on a full pipe) and notice when it has started."""
    assert process.stderr is not None
    async for line in process.stderr:
        if b'"webhook_worker_started"' in line:
            started.set()


@dataclass
class Run:
    name: str
    workers: Callable[[], contextlib.AbstractAsyncContextManager[list[int]]]


async def main(count: int, hooks: int) -> None:
    configure_logging("warning", "json")  # one line per attempt would measure the console, not the worker
    url = test_database_url()
    migrate.upgrade(url)
    async with receiver_process() as (receiver_pid, port):
        capacity, capacity_cpu = await receiver_capacity(port, receiver_pid)
        webhook_ids = await setup(url, port, hooks)
        runs = [
            Run("1 in-process worker", lambda: in_process_workers(url, 1)),
            Run("2 in-process workers", lambda: in_process_workers(url, 2)),
            Run("1 `agora worker` process", lambda: worker_processes(url, 1)),
            Run("2 `agora worker` processes", lambda: worker_processes(url, 2)),
        ]
        print(
            f"{count} deliveries per run to {hooks} endpoints on one local receiver (its own process);"
            f" {os.cpu_count()} CPUs; worker settings: concurrency 32, 4 per endpoint, timeout 10 s"
        )
        print(
            f"receiver alone: {capacity:,.0f} requests/s over 32 keep-alive connections from a raw client"
            f" (receiver CPU {capacity_cpu:.0%} of one core)\n"
        )
        rate, client_cpu = await client_capacity(port, hooks)
        print(
            f"the workers' WebhookClient alone, 32 at once: {rate:,.0f} requests/s"
            f" (this process's CPU {client_cpu:.0%} of one core)\n"
        )
        print("CPU columns: share of one core over the run (workers in this process: this process's CPU)")
        header = f"{'workers':<28} {'seconds':>8} {'deliveries/s':>13} {'p50 attempt':>12}"
        print(f"{header} {'CPU receiver':>13} {'workers':>8} {'postgres':>9} {'attempts':>9}")
        for run in runs:
            async with run.workers() as pids:
                meter = CpuMeter(receiver_pid, lambda pids=pids: pids)
                await asyncio.sleep(0.5)  # settled and idle
                meter.start()
                ids = await enqueue(url, webhook_ids, count)
                await wait_done(url, ids)
                usage = meter.stop()
                elapsed = time.perf_counter() - meter._start[0]
            attempts, succeeded, p50 = await attempts_per_delivery(url, ids)
            check = "ok" if attempts == succeeded == count else f"{attempts}/{succeeded}!"
            print(
                f"{run.name:<28} {elapsed:>8.2f} {count / elapsed:>13,.0f} {p50:>9.0f} ms"
                f" {usage.receiver:>13.0%} {usage.workers:>8.0%} {usage.postgres:>9.0%} {check:>9}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=3000, help="deliveries per run")
    parser.add_argument("--webhooks", type=int, default=16, help="endpoints, four per agent")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.count, arguments.webhooks))
