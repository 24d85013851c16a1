"""Webhook fan-out: `agora worker` processes draining a burst of pending deliveries, against a plain sender.

    .venv/bin/python -m tests.bench.fanout [--deliveries 3000] [--hooks 16] [--processes 1,2]

`fanout_runs(url, ...)` works on any migrated database (the seeded bench one included): it adds an operator,
agents and `hooks` endpoints of its own (unique names, so calls can repeat), all pointing at one 200-receiver in a
process of its own (`tests/webhook_receiver.py`). For each process count:

* agora: that many `agora worker` processes; after a warm-up batch, `deliveries` ping deliveries are enqueued in
  one transaction and the workers woken by the outbox's NOTIFY (as `webhook_throughput.py` does). Seconds run from
  that transaction's start to the last delivery's `completed_at`, both on the database's clock; latencies are the
  attempts' own `duration_ms` (whole ms); every delivery must have exactly one attempt, and it must have succeeded.
* ceiling: as many sender processes, each the workers' own WebhookClient posting the same signed body and headers
  (`delivery_body`, `signed_headers`) in a bare asyncio loop: the outbound HTTP work with no database. Run at the
  workers' concurrency and at a quarter of it, the faster counts (httpx's pool costs more per request the more are
  in flight to one origin, so the workers' own setting is not always the fastest). Latency is the same
  `SendResult.duration_ms`.

Each row's note gives the CPU shares (1 core = 100%) of the receiver, the workers or senders, PostgreSQL and the
whole machine: a receiver near 100% of its core, not Agora, was what limited that run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psutil
import psycopg

from app.config import Settings, load_settings
from app.crypto import KeyRing
from app.outbound.webhook_client import AttemptOutcome, WebhookClient
from app.repo.deliveries import DueDelivery
from app.services import operators
from app.services.agents import AgentProfile
from app.services.sealing import webhook_context
from app.workers.webhook_dispatcher import delivery_body, signed_headers
from domain.webhooks import new_secret, parse_allow_cidrs
from tests.bench.webhook_throughput import LOOPBACK, cpu_seconds, enqueue, receiver_process
from tests.support import ROOT, run_committed_async

SCENARIO = "webhook fan-out"
HOOKS_PER_AGENT = 4
WARMUP = 200  # deliveries (or requests per sender) before each measured run: connections, pools, caches
STALL_SECONDS = 20.0  # give up waiting when no delivery finished for this long
REPORT_SECONDS = 300.0  # a sender process's whole run, at most
RECEIVER_BOUND = 0.9  # share of one core above which the receiver, not the sender, limited the run


# ---------------------------------------------------------------------------------------------------- measuring


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return round(int(match.group(1)) / 1024, 1) if match else 0.0


def reset_peak_rss(pid: int) -> None:
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak RSS := current RSS


def _machine_busy() -> tuple[int, int]:
    fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def postmaster_of(url: str) -> psutil.Process | None:
    """The local PostgreSQL server behind `url` (None when it runs elsewhere): its CPU is the database's."""
    with psycopg.connect(url, autocommit=True) as connection:
        (backend,) = connection.execute("SELECT pg_backend_pid()").fetchone()
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(backend).parent()
            if parent is not None and "postgres" in parent.name():
                return parent
    return None


def _postgres_cpu(postmaster: psutil.Process | None) -> dict[int, float]:
    """CPU seconds by process: the server (with its reaped backends) and each live backend."""
    if postmaster is None:
        return {}
    with contextlib.suppress(psutil.Error):
        times = postmaster.cpu_times()
        cpu = {postmaster.pid: times.user + times.system + times.children_user + times.children_system}
        for child in postmaster.children():
            with contextlib.suppress(psutil.Error):
                cpu[child.pid] = sum(child.cpu_times()[:2])
        return cpu
    return {}


class Meter:
    """CPU shares over a measured interval, in % of one core, plus the machine's busy % of all its cores."""

    def __init__(self, receiver: int, pids: list[int], postmaster: psutil.Process | None) -> None:
        self.receiver, self.pids, self.postmaster = receiver, pids, postmaster

    def _sample(self) -> tuple:
        own = sum(cpu_seconds(pid) for pid in self.pids)
        return time.perf_counter(), cpu_seconds(self.receiver), own, _postgres_cpu(self.postmaster), _machine_busy()

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> dict[str, float]:
        end, start = self._sample(), self._start
        elapsed = end[0] - start[0]
        postgres = sum(seconds - start[3].get(pid, 0.0) for pid, seconds in end[3].items())
        busy, total = end[4][0] - start[4][0], end[4][1] - start[4][1]
        return {
            "receiver": 100 * (end[1] - start[1]) / elapsed,
            "own": 100 * (end[2] - start[2]) / elapsed,
            "postgres": 100 * postgres / elapsed if self.postmaster else float("nan"),
            "machine": 100 * busy / max(total, 1),
        }


def cpu_note(usage: dict[str, float], own: str) -> str:
    receiver = usage["receiver"]
    verdict = "the receiver was the bottleneck" if receiver >= 100 * RECEIVER_BOUND else "receiver not the bottleneck"
    postgres = "n/a" if math.isnan(usage["postgres"]) else f"{usage['postgres']:.0f}"
    return (
        f"CPU % of one core: receiver {receiver:.0f}, {own} {usage['own']:.0f}, postgres {postgres};"
        f" machine {usage['machine']:.0f}% busy of {os.cpu_count()} cores; {verdict}"
    )


def percentile(ordered: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks, as PostgreSQL's percentile_cont."""
    if not ordered:
        return None
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def row(target: str, processes: int, **values: object) -> dict:
    done = {"scenario": SCENARIO, "target": target, "processes": processes, **values}
    done["rps"] = round(done["requests"] / done["seconds"], 1) if done["seconds"] else 0.0
    return done


# ---------------------------------------------------------------------------------------------------- agora


async def setup(url: str, port: int, hooks: int) -> tuple[list[int], list[str]]:
    """An operator, agents and `hooks` endpoints on the receiver (four per agent): (webhook ids, their URLs)."""
    stamp = secrets.token_hex(3)
    keyring = KeyRing.parse(os.environ["AGORA_SECRET_KEY"])  # the workers' key (tests.support sets the session's)
    created = await run_committed_async(url, lambda uow: operators.create_operator(uow, name=f"fanout {stamp}"))
    ids, urls = [], [f"http://127.0.0.1:{port}/fanout-{stamp}-{n}" for n in range(hooks)]
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        for n, hook_url in enumerate(urls):
            if n % HOOKS_PER_AGENT == 0:
                profile = AgentProfile(f"fanout receiver {stamp} {n // HOOKS_PER_AGENT}", "has webhooks")
                agent = await run_committed_async(
                    url, lambda uow, p=profile: operators.create_agent(uow, operator_id=created.operator.id, profile=p)
                )
            cursor = await connection.execute("SELECT nextval(pg_get_serial_sequence('webhook', 'id'))")
            (webhook_id,) = await cursor.fetchone()
            secret = keyring.seal(new_secret().encode(), webhook_context(webhook_id))  # sealed to its row, as stored
            await connection.execute(
                "INSERT INTO webhook (id, agent_id, url, events, secret) VALUES (%s, %s, %s, %s, %s)",
                (webhook_id, agent.agent.id, hook_url, ["task.created"], secret),
            )
            ids.append(webhook_id)
    return ids, urls


async def _listeners(connection: psycopg.AsyncConnection) -> int:
    cursor = await connection.execute(
        """SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
              AND application_name = 'agora-webhooks' AND query ILIKE 'LISTEN%%'"""
    )
    return (await cursor.fetchone())[0]


@contextlib.asynccontextmanager
async def worker_processes(url: str, count: int) -> AsyncIterator[list[int]]:
    """`count` `agora worker` processes, yielded once each LISTENs (at warning level none logs its start)."""
    env = {**os.environ, "AGORA_DATABASE_URL": url, "AGORA_WEBHOOK_ALLOW_CIDRS": LOOPBACK, "AGORA_LOG_LEVEL": "warning"}
    processes: list[asyncio.subprocess.Process] = []
    logs: collections.deque[bytes] = collections.deque(maxlen=20)
    drains = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        before = await _listeners(connection)
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
                drains.append(asyncio.create_task(_drain(process, logs)))
            deadline = time.monotonic() + 60
            while await _listeners(connection) < before + count:
                if any(p.returncode is not None for p in processes) or time.monotonic() > deadline:
                    raise RuntimeError("agora worker did not start: " + b"".join(logs).decode(errors="replace"))
                await asyncio.sleep(0.05)
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


async def _drain(process: asyncio.subprocess.Process, logs: collections.deque[bytes]) -> None:
    """Keep the worker's log pipe empty (a full one would block it), remembering the end for error messages."""
    assert process.stderr is not None
    async for line in process.stderr:
        logs.append(line)


async def drain_batch(url: str, hooks: list[int], count: int) -> tuple[list[int], str]:
    """Enqueue `count` deliveries and wait until none is pending: (their ids, "" or why the wait was abandoned)."""
    ids = await enqueue(url, hooks, count)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        last, changed = -1, time.monotonic()
        while True:
            cursor = await connection.execute(
                # One transaction's ids: a range (the partial index on pending rows makes this cheap to poll).
                "SELECT count(*) FROM webhook_delivery WHERE status = 'pending' AND id BETWEEN %s AND %s",
                (min(ids), max(ids)),
            )
            (left,) = await cursor.fetchone()
            if not left:
                return ids, ""
            if left != last:
                last, changed = left, time.monotonic()
            elif time.monotonic() - changed > STALL_SECONDS:
                return ids, f"gave up: {left} deliveries still pending, none finished for {STALL_SECONDS:.0f} s"
            await asyncio.sleep(0.05)


_OUTCOME = """
SELECT count(*) FILTER (WHERE d.status = 'succeeded'),
       extract(epoch FROM max(d.completed_at) - min(d.created_at))::float8,
       count(*) FILTER (WHERE a.ok <> 1),
       count(*) FILTER (WHERE NOT (d.status = 'succeeded' AND a.attempts = 1 AND a.ok = 1)),
       coalesce(sum(a.attempts - a.ok), 0)
  FROM webhook_delivery d,
       LATERAL (SELECT count(*) AS attempts, count(*) FILTER (WHERE outcome = 'succeeded') AS ok
                  FROM webhook_attempt WHERE delivery_id = d.id) a
 WHERE d.id = ANY (%(ids)s)
"""
_LATENCY = """
SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY duration_ms), max(duration_ms)
  FROM webhook_attempt WHERE delivery_id = ANY (%(ids)s)
"""


async def agora_run(url: str, count: int, hooks: list[int], deliveries: int, receiver: int, settings: Settings) -> dict:
    postmaster = postmaster_of(url)
    async with worker_processes(url, count) as pids:
        _, problem = await drain_batch(url, hooks, min(WARMUP, deliveries))
        if problem:
            raise RuntimeError(f"warm-up: {problem}")
        for pid in pids:
            reset_peak_rss(pid)
        await asyncio.sleep(0.3)  # settled and idle
        meter = Meter(receiver, pids, postmaster)
        meter.start()
        started = time.perf_counter()
        ids, problem = await drain_batch(url, hooks, deliveries)
        wall = time.perf_counter() - started
        usage = meter.stop()
        rss = [peak_rss_mb(pid) for pid in pids]
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        succeeded, seconds, not_once, unclean, failed = await (
            await connection.execute(_OUTCOME, {"ids": ids})
        ).fetchone()
        (p50, p99), longest = await (await connection.execute(_LATENCY, {"ids": ids})).fetchone()
    once = "exactly once: ok" if not not_once else f"EXACTLY-ONCE VIOLATED: {not_once} deliveries"
    name = "`agora worker` process" if count == 1 else "`agora worker` processes"
    note = (
        f"{count} {name} (concurrency {settings.webhook_concurrency}, {settings.webhook_per_endpoint_concurrency}"
        f" per endpoint) -> {len(hooks)} endpoints on one receiver; {once}; {failed} failed attempts;"
        f" {cpu_note(usage, 'workers')}"
    )
    if problem:
        note += f"; {problem}"
    return row(
        "agora",
        count,
        requests=succeeded,
        seconds=round(seconds if not problem and seconds else wall, 3),
        p50_ms=p50,
        p99_ms=p99,
        max_ms=None if longest is None else float(longest),
        errors=unclean,
        peak_rss_mb=rss,
        note=note,
    )


# ---------------------------------------------------------------------------------------------------- ceiling


async def send(urls: list[str], count: int, concurrency: int, first_event: int) -> None:
    """In a sender process: warm up, say "ready", wait for "go", post `count` signed deliveries, print a JSON
    report, exit when stdin closes."""
    settings = load_settings()  # the workers' environment: same timeout
    client = WebhookClient(allow=parse_allow_cidrs(LOOPBACK), timeout=settings.webhook_timeout_seconds)
    secret, durations, errors = new_secret(), [], 0
    keyring = KeyRing.parse(settings.secret_key)
    sealed = [keyring.seal(secret.encode(), webhook_context(hook)) for hook in range(len(urls))]

    async def sender(numbers: Iterator[int], record: bool) -> None:
        nonlocal errors
        for n in numbers:  # the same per-delivery work as the worker's, minus the database
            hook = n % len(urls)
            delivery = DueDelivery(
                id=n,
                webhook_id=hook,
                attempt_number=1,
                attempts_in_round=1,
                url=urls[hook],
                sealed_secrets=(sealed[hook],),
                event_id=first_event + n,
                event_type="webhook.ping",
                event_data=b'{"message":"bench","webhook_id":%d}' % hook,
                event_created_at=datetime.now(UTC),
            )
            body = delivery_body(delivery)
            opened = tuple(keyring.open(s, webhook_context(hook)).decode() for s in delivery.sealed_secrets)
            result = await client.post(delivery.url, body, signed_headers(delivery, body, int(time.time()), opened))
            if record:
                durations.append(result.duration_ms)
                errors += result.outcome is not AttemptOutcome.SUCCEEDED

    try:
        warmup = iter(range(min(WARMUP, count)))
        await asyncio.gather(*(sender(warmup, False) for _ in range(concurrency)))
        reset_peak_rss(os.getpid())
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        numbers = iter(range(WARMUP, WARMUP + count))
        started = time.monotonic()
        await asyncio.gather(*(sender(numbers, True) for _ in range(concurrency)))
        ended = time.monotonic()
    finally:
        await client.aclose()
    report = {"started": started, "ended": ended, "durations": durations, "errors": errors}
    print(json.dumps({**report, "rss": peak_rss_mb(os.getpid())}), flush=True)
    await asyncio.to_thread(sys.stdin.read)  # stay until told, so that the CPU meter can still read this process


async def ceiling_run(urls: list[str], count: int, deliveries: int, receiver: int, concurrency: int) -> dict:
    shares = [deliveries // count + (n < deliveries % count) for n in range(count)]
    processes = []
    try:
        for n, share in enumerate(shares):
            config = json.dumps({"urls": urls, "count": share, "concurrency": concurrency, "first_event": n << 32})
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "tests.bench.fanout",
                    "--sender",
                    config,
                    cwd=ROOT,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    limit=1 << 26,  # the report is one line with every latency in it
                )
            )
        for process in processes:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            if line.strip() != b"ready":
                raise RuntimeError(f"sender did not start: {line!r}")
        meter = Meter(receiver, [process.pid for process in processes], None)
        meter.start()
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            await process.stdin.drain()
        # Each sender's posts time out, so its report comes; a sender that hangs all the same fails the run.
        reports = [
            json.loads(await asyncio.wait_for(process.stdout.readline(), REPORT_SECONDS))  # type: ignore[union-attr]
            for process in processes
        ]
        usage = meter.stop()
    finally:
        for process in processes:
            if process.stdin is not None:
                process.stdin.close()
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
    durations = sorted(d for report in reports for d in report["durations"])
    errors = sum(report["errors"] for report in reports)
    name = "sender process" if count == 1 else "sender processes"
    note = (
        f"{count} plain {name}: the workers' WebhookClient, delivery_body and signed_headers, {concurrency} in flight"
        f" each, no database; {cpu_note(usage, 'senders')}"
    )
    return row(
        "ceiling",
        count,
        requests=len(durations) - errors,
        seconds=round(max(r["ended"] for r in reports) - min(r["started"] for r in reports), 3),
        p50_ms=percentile(durations, 0.5),
        p99_ms=percentile(durations, 0.99),
        max_ms=float(durations[-1]) if durations else None,
        errors=errors,
        peak_rss_mb=[report["rss"] for report in reports],
        note=note,
    )


async def best_ceiling(urls: list[str], count: int, deliveries: int, receiver: int, concurrency: int) -> dict:
    """The faster of the senders at the workers' concurrency and at a quarter of it: httpx's pool spends more per
    request the more are in flight on one origin (its assignment pass churns), so fewer can be faster."""
    runs = {c: await ceiling_run(urls, count, deliveries, receiver, c) for c in {concurrency, max(1, concurrency // 4)}}
    fastest = max(runs, key=lambda c: runs[c]["rps"])
    best = runs.pop(fastest)
    if runs:
        also = "; ".join(f"{c} in flight: {run['rps']:,.0f}/s, p50 {run['p50_ms']} ms" for c, run in runs.items())
        best["note"] += f"; the faster of the concurrencies tried (also {also})"
    return best


# ---------------------------------------------------------------------------------------------------- entry points


def fanout_runs(url: str, *, processes: list[int], deliveries: int = 3000, hooks: int = 16) -> list[dict]:
    """Measure webhook fan-out on the (migrated) database at `url`: per process count, one "agora" row (that many
    `agora worker` processes) and one "ceiling" row (that many plain senders). See the module's docstring."""
    return asyncio.run(_fanout_runs(url, processes, deliveries, hooks))


async def _fanout_runs(url: str, processes: list[int], deliveries: int, hooks: int) -> list[dict]:
    # The workers read this environment too (plus the allow list): the ceiling gets the same concurrency.
    settings = load_settings({**os.environ, "AGORA_WEBHOOK_ALLOW_CIDRS": LOOPBACK})
    rows = []
    async with receiver_process() as (receiver, port):
        webhook_ids, urls = await setup(url, port, hooks)
        for count in processes:
            rows.append(await agora_run(url, count, webhook_ids, deliveries, receiver, settings))
            rows.append(await best_ceiling(urls, count, deliveries, receiver, settings.webhook_concurrency))
    return rows


def _print(rows: list[dict]) -> None:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    print(f"{'target':<8} {'procs':>5} {'requests':>8} {'seconds':>8} {'per s':>8} {'p50 ms':>7} {'p99 ms':>7}", end="")
    print(f" {'max ms':>7} {'errors':>6}  peak RSS MB")
    for r in rows:
        print(
            f"{r['target']:<8} {r['processes']:>5} {r['requests']:>8} {r['seconds']:>8.2f} {r['rps']:>8,.0f}"
            f" {ms(r['p50_ms']):>7} {ms(r['p99_ms']):>7} {ms(r['max_ms']):>7} {r['errors']:>6}"
            f"  {' / '.join(f'{mb:.0f}' for mb in r['peak_rss_mb'])}"
        )
    for r in rows:
        print(f"\n{r['target']} x{r['processes']}: {r['note']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--deliveries", type=int, default=3000, help="deliveries (and ceiling requests) per run")
    parser.add_argument("--hooks", type=int, default=16, help="endpoints, four per agent")
    parser.add_argument("--processes", default="1,2", help="worker (and sender) process counts, comma-separated")
    parser.add_argument("--sender", help=argparse.SUPPRESS)  # internal: run as a ceiling sender process
    args = parser.parse_args(argv)
    if args.sender:
        config = json.loads(args.sender)
        asyncio.run(send(config["urls"], config["count"], config["concurrency"], config["first_event"]))
        return
    from app.logging import configure_logging
    from app.repo import migrate
    from tests.support import test_database_url

    configure_logging("warning", "json")
    url = test_database_url()
    migrate.upgrade(url)
    processes = [int(n) for n in args.processes.split(",")]
    _print(fanout_runs(url, processes=processes, deliveries=args.deliveries, hooks=args.hooks))


if __name__ == "__main__":
    main()
